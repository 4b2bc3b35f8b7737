"""The importance-sampled NLL: exact against numerical integration for a 1-D latent, seeded per image (so
independent of the batch size and of which other images are estimated), equal in expectation to the
negative ELBO at K = 1, and tighter as K grows on a trained model."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from vaelab.config.schema import BaseSection, Config, TrainSection
from vaelab.data.processed import Splits
from vaelab.evaluation.likelihood import (
    estimate_nll,
    image_draws,
    importance_sampled_nll,
    log_mean_exp,
    subset_indices,
)
from vaelab.evaluation.metrics import mean_negative_elbo
from vaelab.model import build_vae

# A one-layer VAE on 4x4 images: p(x) has a 1-D integral over z that a fine grid computes exactly.
ONE_D = TrainSection(
    z_dim=1,
    encoder_filters=(2,),
    encoder_kernels=(3,),
    encoder_strides=(1,),
    decoder_filters=(1,),
    decoder_kernels=(3,),
    decoder_strides=(1,),
    reconstruction="bce",
)


def test_log_mean_exp_is_exact_and_does_not_overflow() -> None:
    np.testing.assert_allclose(log_mean_exp(np.array([[0.0, math.log(3.0)]])), [math.log(2.0)], rtol=1e-15)
    np.testing.assert_allclose(log_mean_exp(np.array([[-1e4, -1e4], [800.0, 800.0]])), [-1e4, 800.0], rtol=1e-15)
    assert log_mean_exp(np.array([[-np.inf, 0.0]]))[0] == pytest.approx(-math.log(2.0))


@pytest.fixture(scope="module")
def one_d_vae():
    keras.utils.set_random_seed(0)
    model = build_vae((4, 4, 1), ONE_D, seed=0)
    dense = model.decoder.get_layer("decoder_dense")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 6.0, bias])  # make p(x|z) depend strongly on z
    return model


def _binary_images(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=(n, 4, 4, 1)) > 0.5).astype("float32")


def _standard_normal(z: np.ndarray) -> np.ndarray:
    return -0.5 * (z**2 + math.log(2 * math.pi))


def _exact_nll_by_quadrature(model, x: np.ndarray, log_prior=_standard_normal) -> np.ndarray:
    """-log integral p(x|z) p(z) dz on a grid of z in [-12, 12], in float64 from the decoder's logits; p(z) = N(0, 1)
    unless ``log_prior`` gives another log density."""
    grid = np.linspace(-12.0, 12.0, 24001)
    step = grid[1] - grid[0]
    logits = keras.ops.convert_to_numpy(model.decode_logits(grid[:, None].astype("float32"))).astype(np.float64)
    flat_x, flat_logits = x.reshape(len(x), 1, -1), logits.reshape(1, len(grid), -1)
    # log sigmoid(l) = -log(1 + e^-l) and log(1 - sigmoid(l)) = -log(1 + e^l)
    log_likelihood = -np.sum(flat_x * np.logaddexp(0, -flat_logits) + (1 - flat_x) * np.logaddexp(0, flat_logits), axis=-1)
    log_joint = log_likelihood + log_prior(grid)  # (images, grid)
    peak = log_joint.max(axis=1, keepdims=True)
    return -(np.log(np.sum(np.exp(log_joint - peak), axis=1) * step) + peak[:, 0])


def test_many_importance_samples_reach_the_exact_likelihood(one_d_vae) -> None:
    x = _binary_images(3, seed=1)
    exact = _exact_nll_by_quadrature(one_d_vae, x)
    estimate = importance_sampled_nll(one_d_vae, x, k=20000, seed=0, max_decoded=20000)
    np.testing.assert_allclose(estimate, exact, atol=0.01)
    single = importance_sampled_nll(one_d_vae, x, k=1, seed=0)
    assert np.all(np.abs(single - exact) > 0.01)  # one sample is not enough: the tolerance above means something


def test_same_seed_same_numbers_for_any_batch_size(one_d_vae) -> None:
    x = _binary_images(5, seed=2)
    big = importance_sampled_nll(one_d_vae, x, k=6, seed=3, max_decoded=1000)  # all 30 draws in one pass
    images_split = importance_sampled_nll(one_d_vae, x, k=6, seed=3, max_decoded=13)  # 2 images per pass
    draws_split = importance_sampled_nll(one_d_vae, x, k=6, seed=3, max_decoded=4)  # 1 image, 4 + 2 draws
    assert big.shape == (5,) and big.dtype == np.float64
    np.testing.assert_allclose(images_split, big, rtol=1e-6)
    np.testing.assert_allclose(draws_split, big, rtol=1e-6)
    assert not np.allclose(importance_sampled_nll(one_d_vae, x, k=6, seed=4), big)


def test_an_images_draws_come_from_its_own_seeded_generator() -> None:
    draws = image_draws(seed=3, index=5, k=4, z_dim=2)
    assert draws.shape == (4, 2) and draws.dtype == np.float32
    np.testing.assert_array_equal(draws, np.random.default_rng([3, 5]).standard_normal((4, 2)).astype(np.float32))
    assert not np.array_equal(draws, image_draws(seed=3, index=6, k=4, z_dim=2))
    assert not np.array_equal(draws, image_draws(seed=4, index=5, k=4, z_dim=2))


def test_an_images_estimate_does_not_depend_on_the_other_images_estimated(one_d_vae) -> None:
    x = _binary_images(10, seed=5)
    chosen = np.array([1, 4, 8])
    everything = importance_sampled_nll(one_d_vae, x, k=5, seed=7)
    alone = importance_sampled_nll(one_d_vae, x[chosen], k=5, seed=7, indices=chosen)
    np.testing.assert_allclose(alone, everything[chosen], rtol=1e-6)
    # Without their indices the images would be numbered 0, 1, 2 and get those images' draws.
    renumbered = importance_sampled_nll(one_d_vae, x[chosen], k=5, seed=7)
    assert not np.allclose(renumbered, everything[chosen], rtol=1e-6)


def test_estimate_on_a_seeded_subset_of_test_images(one_d_vae) -> None:
    x = _binary_images(10, seed=5)
    chosen = subset_indices(10, 4, seed=7)
    np.testing.assert_array_equal(chosen, np.sort(np.random.default_rng(7).choice(10, size=4, replace=False)))
    expected = importance_sampled_nll(one_d_vae, x[chosen], k=5, seed=7, indices=chosen).mean()
    assert estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7) == pytest.approx(expected, rel=1e-12)
    assert estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7, max_decoded=3) == pytest.approx(expected, rel=1e-6)
    assert estimate_nll(one_d_vae, x, k=5, n_images=None, seed=7) == pytest.approx(
        importance_sampled_nll(one_d_vae, x, k=5, seed=7).mean(), rel=1e-12
    )
    np.testing.assert_array_equal(subset_indices(10, None, seed=7), np.arange(10))
    np.testing.assert_array_equal(subset_indices(10, 12, seed=7), np.arange(10))


def test_the_cheaper_estimate_is_the_mean_over_the_first_of_the_chosen_images(one_d_vae) -> None:
    x = _binary_images(10, seed=5)
    chosen = subset_indices(10, 4, seed=7)
    per_image = importance_sampled_nll(one_d_vae, x[chosen], k=5, seed=7, indices=chosen)
    full = estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7)
    # The first two chosen images, each estimated with its own draws as in the full estimate.
    assert estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7, first=2) == pytest.approx((per_image[0] + per_image[1]) / 2, rel=1e-6)
    assert abs(estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7, first=2) - full) > 1e-3  # not the full one
    # As many as are chosen, or more: the full estimate itself, to the last bit.
    assert estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7, first=4) == full
    assert estimate_nll(one_d_vae, x, k=5, n_images=4, seed=7, first=9) == full
    assert estimate_nll(one_d_vae, x, k=5, n_images=None, seed=7, first=3) == pytest.approx(
        importance_sampled_nll(one_d_vae, x[:3], k=5, seed=7).mean(), rel=1e-6
    )


def test_progress_counts_the_images_finished_after_each_pass(one_d_vae) -> None:
    seen: list[int] = []
    importance_sampled_nll(one_d_vae, _binary_images(5, seed=2), k=4, seed=0, max_decoded=8, progress=seen.append)
    assert seen == [2, 4, 5]  # 8 decoded points hold 2 images of 4 draws


def test_bad_k_is_rejected(one_d_vae) -> None:
    with pytest.raises(ValueError, match="received k=0, max_decoded=1000"):
        importance_sampled_nll(one_d_vae, _binary_images(1, 0), k=0, seed=0)


def _bars(n: int, seed: int) -> np.ndarray:
    """16x16 images, each one of 4 bars at a random height band: a little to learn."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 16, 16, 1), dtype="float32")
    for i, row in enumerate(rng.integers(0, 4, n)):
        x[i, 2 + 3 * row : 4 + 3 * row, 2:14, 0] = 1.0
    return x


@pytest.fixture(scope="module")
def trained_vae():
    from vaelab.training import train

    settings = TrainSection(
        z_dim=2,
        encoder_filters=(8, 8),
        encoder_kernels=(3, 3),
        encoder_strides=(2, 2),
        decoder_filters=(8, 1),
        decoder_kernels=(3, 3),
        decoder_strides=(2, 2),
        reconstruction="bce",
        r_loss_factor=256.0,
        learning_rate=0.005,
        batch_size=32,
        epochs=4,
    )
    x = _bars(512, seed=0)
    labels = np.zeros(len(x), "uint8")
    splits = Splits(x, labels, x[:64], labels[:64], x[:0], labels[:0], (16, 16, 1), ())
    config = Config(train=settings, base=BaseSection(seed=0))
    return train(config, splits, verbose=0).model


@pytest.mark.slow
def test_k1_equals_the_negative_elbo_in_expectation_and_more_samples_tighten_it(trained_vae) -> None:
    x = _bars(200, seed=1)
    # A K=1 estimate is -log w of one draw; the mean over images and seeds estimates E_q[-log w], the negative
    # ELBO, which the evaluate stage computes with the KL in closed form.
    k1_mean = float(np.mean([importance_sampled_nll(trained_vae, x, k=1, seed=s) for s in range(20)]))
    neg_elbo = float(np.mean([mean_negative_elbo(trained_vae, x, batch_size=200, seed=s) for s in range(20)]))
    assert k1_mean == pytest.approx(neg_elbo, abs=0.3)  # both are means of 4000 draws: standard error ~0.05

    estimates = [float(np.mean(importance_sampled_nll(trained_vae, x, k=k, seed=0))) for k in (1, 10, 100)]
    assert estimates[0] > estimates[1] > estimates[2], estimates
    assert estimates[0] - estimates[2] > 0.3  # a real gap (0.77 nats here), not rounding


def test_a_vamp_models_estimate_reaches_the_likelihood_under_its_mixture_prior() -> None:
    # The same 1-D VAE with a VampPrior of two pseudo-images, one all but white and one all but black: its
    # prior is the mixture of their two encodings, which quadrature integrates against p(x|z) exactly.
    keras.utils.set_random_seed(0)
    model = build_vae((4, 4, 1), ONE_D.model_copy(update={"prior": "vamp", "vamp_components": 2}), seed=0)
    dense = model.decoder.get_layer("decoder_dense")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 6.0, bias])
    assert model.pseudo_inputs is not None
    model.pseudo_inputs.pixel_logits.assign(np.stack([np.full((4, 4, 1), 5.0), np.full((4, 4, 1), -5.0)]).astype("float32"))
    means, log_vars = (keras.ops.convert_to_numpy(t).astype(np.float64)[:, 0] for t in model.prior_components())
    assert abs(means[0] - means[1]) > 0.05  # two components apart, so the mixture is no single Gaussian

    def log_mixture(z):
        densities = np.exp(-0.5 * ((z[:, None] - means) ** 2 / np.exp(log_vars) + log_vars + math.log(2 * math.pi)))
        return np.log(densities.mean(axis=1))

    x = _binary_images(3, seed=1)
    exact = _exact_nll_by_quadrature(model, x, log_mixture)
    estimate = importance_sampled_nll(model, x, k=20000, seed=0, max_decoded=20000)
    np.testing.assert_allclose(estimate, exact, atol=0.01)
    under_the_normal_prior = _exact_nll_by_quadrature(model, x)
    assert np.all(np.abs(under_the_normal_prior - exact) > 0.05)  # the prior matters at this tolerance
