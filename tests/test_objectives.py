"""The IWAE loss and the VampPrior inside the model: k = 1 against the ELBO, the bound rising with k, the
VampPrior's KL estimate against the closed form, and the settings they refuse."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from vaelab.config.schema import TrainSection
from vaelab.errors import ConfigError
from vaelab.losses import iwae_bound, kl_divergence
from vaelab.model import VAE, build_vae

# A small network on 28x28 images: 784 pixels, so r_loss_factor 784 makes the weighted loss the negative ELBO.
TINY = {
    "z_dim": 2,
    "encoder_filters": (4, 8),
    "encoder_kernels": (3, 3),
    "encoder_strides": (2, 2),
    "decoder_filters": (8, 1),
    "decoder_kernels": (3, 3),
    "decoder_strides": (2, 2),
    "reconstruction": "bce",
    "r_loss_factor": 784.0,
}


def tiny_vae(seed: int = 0, **settings) -> VAE:
    return build_vae((28, 28, 1), TrainSection(**{**TINY, **settings}), seed=seed)


def binary_images(n: int = 16, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 28, 28, 1)) < 0.3).astype("float32")


def zero_kernels(vae: VAE, bias_mu=0.0, bias_log_var=0.0) -> None:
    """Every image (and pseudo-image) encodes to N(bias_mu, exp(bias_log_var)): q(z|x) no longer depends on x."""
    for name, bias in (("mu", bias_mu), ("log_var", bias_log_var)):
        kernel, offset = vae.encoder.get_layer(name).weights
        kernel.assign(np.zeros(kernel.shape, "float32"))
        offset.assign(np.full(offset.shape, bias, "float32"))


def test_iwae_with_one_draw_is_the_negative_elbo_when_the_posterior_is_the_prior():
    # Same weights and the same sampling seed, so both models decode the same z. With q(z|x) = N(0, I) the
    # closed-form KL is 0 and so is log p(z) - log q(z|x) at every z: the losses agree to float32 round-off.
    x = binary_images()
    elbo, iwae = tiny_vae(), tiny_vae(loss="iwae", iwae_samples=1)
    iwae.set_weights(elbo.get_weights())
    for model in (elbo, iwae):
        zero_kernels(model)
    elbo_total, elbo_reconstruction, elbo_kl = (float(v) for v in elbo._loss_terms(x, training=False))
    iwae_total, iwae_reconstruction, iwae_kl, bound = (float(v) for v in iwae._loss_terms(x, training=False))
    assert elbo_kl == 0.0 and iwae_kl == pytest.approx(0.0, abs=1e-5)
    assert iwae_reconstruction == pytest.approx(elbo_reconstruction, rel=1e-6)
    assert iwae_total == pytest.approx(elbo_total, rel=1e-6)
    assert bound == pytest.approx(iwae_total, rel=1e-6)
    assert 400 < elbo_total < 700  # about 784 ln 2 at a random decoder: it is the summed cross-entropy, not a mean


def test_iwae_with_one_draw_averages_to_the_negative_elbo():
    # With an x-dependent posterior the one-draw KL estimate differs per draw but not in expectation.
    x = binary_images(8)
    elbo, iwae = tiny_vae(), tiny_vae(loss="iwae", iwae_samples=1)
    iwae.set_weights(elbo.get_weights())
    zero_kernels(elbo, 0.8, -1.0)
    zero_kernels(iwae, 0.8, -1.0)
    draws = 300
    elbo_losses = [float(elbo._loss_terms(x, training=False)[0]) for _ in range(draws)]
    iwae_losses = [float(iwae._loss_terms(x, training=False)[0]) for _ in range(draws)]
    difference = np.asarray(iwae_losses) - np.asarray(elbo_losses)  # the same z each time: only the KL differs
    standard_error = float(np.std(difference) / np.sqrt(draws))
    assert standard_error > 0  # the one-draw estimate does vary
    assert abs(float(np.mean(difference))) < 4 * standard_error


def test_the_models_iwae_bound_rises_with_k_over_its_own_draws():
    # The model's log weights at 6 fixed draws per image; over all k-subsets of them the mean bound never falls
    # as k grows (see tests/test_losses.py), so the loss -bound never rises: exactly, not in expectation.
    x = binary_images(4)
    vae = tiny_vae(loss="iwae", iwae_samples=6)
    zero_kernels(vae, 0.5, 0.5)  # a posterior wider than the prior: weights that differ a lot
    log_likelihood, log_prior, log_posterior = (np.asarray(t) for t in vae.log_weight_terms(x, 6))
    log_weights = log_likelihood + log_prior - log_posterior
    losses = [
        -float(np.mean([np.mean(np.asarray(iwae_bound(log_weights[:, list(subset)]))) for subset in combinations(range(6), k)]))
        for k in range(1, 7)
    ]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    # and k = 6 is the model's own loss at these draws: logsumexp over the 6 minus ln 6
    assert losses[-1] == pytest.approx(-float(np.mean(np.asarray(iwae_bound(log_weights)))), rel=1e-6)


def test_the_iwae_loss_falls_with_k_on_a_fixed_model():
    # One set of weights (build_vae's seed seeds only the sampling), a decoder made to depend strongly on z, and
    # the loss averaged over 40 batches of fresh draws.
    import keras

    keras.utils.set_random_seed(0)
    x = binary_images(16)
    model = tiny_vae()
    dense = model.decoder.get_layer("decoder_dense")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 6.0, bias])
    weights = model.get_weights()
    losses = {}
    for k in (1, 16):
        vae = tiny_vae(seed=5, loss="iwae", iwae_samples=k)
        vae.set_weights(weights)
        zero_kernels(vae, 0.5, 0.5)
        values = [float(vae._loss_terms(x, training=False)[0]) for _ in range(40)]
        losses[k] = (float(np.mean(values)), float(np.std(values) / np.sqrt(len(values))))
    (one, one_error), (many, many_error) = losses[1], losses[16]
    assert many < one - 4 * (one_error + many_error)


def test_vamp_kl_estimate_averages_to_the_closed_form_when_its_one_component_is_the_standard_normal():
    # One pseudo-image of (numerically) all zeros: the encoder's biases start at 0, so it encodes to N(0, I),
    # and the VampPrior is N(0, I). The images' own posteriors are x-dependent; log q - log p at z ~ q averages
    # to the closed-form KL(q || N(0, I)).
    vae = tiny_vae(loss="iwae", iwae_samples=4000, prior="vamp", vamp_components=1)
    assert vae.pseudo_inputs is not None
    vae.pseudo_inputs.pixel_logits.assign(np.full((1, 28, 28, 1), -100.0, "float32"))
    means, log_vars = (np.asarray(t) for t in vae.prior_components())
    np.testing.assert_allclose(means, 0.0, atol=1e-6)
    np.testing.assert_allclose(log_vars, 0.0, atol=1e-6)
    x = binary_images(3)
    _, log_prior, log_posterior = (np.asarray(t) for t in vae.log_weight_terms(x, 4000))
    estimates = log_posterior - log_prior  # (3, 4000)
    mu, log_var = vae.encode(x)
    closed = np.asarray(kl_divergence(mu, log_var))
    assert np.all(closed > 1e-4)  # the posteriors are not the prior
    errors = np.std(estimates, axis=1) / np.sqrt(4000)
    assert np.all(np.abs(estimates.mean(axis=1) - closed) < 4 * errors + 1e-6)


def twins_encoding_alike():
    """A VampPrior VAE and its normal-prior twin (same weights), every image and pseudo-image encoding to N(0.3, e^-0.5)."""
    vamp, normal = tiny_vae(prior="vamp", vamp_components=3), tiny_vae()
    normal.set_weights([w for w in vamp.get_weights() if w.shape != (3, 28, 28, 1)])
    for model in (vamp, normal):
        zero_kernels(model, 0.3, -0.5)
    return vamp, normal


def test_vamp_prior_kl_is_zero_when_every_image_encodes_alike():
    # Kernels zero: data and pseudo-images all encode to N(0.3, e^-0.5), so p(z) = q(z|x) and log q - log p is
    # 0 at every z; the normal prior's KL of the same posterior is the closed form.
    x = binary_images(8)
    vamp, normal = twins_encoding_alike()
    _, vamp_reconstruction, vamp_kl = (float(v) for v in vamp._loss_terms(x, training=False))
    _, normal_reconstruction, normal_kl = (float(v) for v in normal._loss_terms(x, training=False))
    assert vamp_kl == pytest.approx(0.0, abs=1e-5)
    assert normal_kl == pytest.approx(2 * -0.5 * (1 - 0.5 - 0.09 - np.exp(-0.5)), rel=1e-5)
    assert vamp_reconstruction == pytest.approx(normal_reconstruction, rel=1e-6)  # the same draws decoded


def test_a_vamp_model_has_its_pseudo_images_as_weights_and_a_normal_model_none():
    vamp, normal = tiny_vae(prior="vamp", vamp_components=7), tiny_vae()
    pseudo = [w for w in vamp.trainable_weights if w.path.endswith("pixel_logits")]
    assert len(pseudo) == 1 and tuple(pseudo[0].shape) == (7, 28, 28, 1)
    assert vamp.pseudo_inputs is not None
    images = np.asarray(vamp.pseudo_inputs.images())
    assert images.min() > 0.4 and images.max() < 0.6 and images.std() > 0  # grey, not all alike
    assert len(vamp.weights) == len(normal.weights) + 1
    assert normal.pseudo_inputs is None and normal.prior_components() is None


def test_a_vamp_iwae_model_saves_and_loads(tmp_path):
    import keras

    vae = tiny_vae(loss="iwae", iwae_samples=3, prior="vamp", vamp_components=2)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert (loaded.objective, loaded.iwae_samples, loaded.prior, loaded.vamp_components) == ("iwae", 3, "vamp", 2)
    for saved, read in zip(vae.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(read), np.asarray(saved))
    assert [m.name for m in loaded.metrics] == ["loss", "reconstruction_loss", "kl_loss", "iwae_nats"]


def test_iwae_needs_r_loss_factor_equal_to_the_pixels():
    expected = r"^train.loss iwae needs train.r_loss_factor equal to the 784 pixels of a 28x28x1 image .*received r_loss_factor=1000$"
    with pytest.raises(ConfigError, match=expected):
        tiny_vae(loss="iwae", r_loss_factor=1000.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "iwae", "reconstruction": "mse"}, "loss iwae weighs each draw by its likelihood, which reconstruction 'mse' is not"),
        ({"iwae_samples": 5}, "iwae_samples=5 counts only with loss: iwae"),
    ],
)
def test_settings_iwae_cannot_use_are_refused(settings, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TrainSection(**{**TINY, **settings})


def test_the_evaluate_stage_measures_a_vamp_model_against_its_own_prior():
    # Every image and pseudo-image encodes to N(0.3, e^-0.5): the VampPrior is that Gaussian, so the test KL is 0
    # at every draw (a normal-prior twin's is the closed form), and prior points are draws from it, seeded: the
    # component indices first, then the standard-normal draws.
    from vaelab.evaluation.metrics import loss_terms, prior_points

    x = binary_images(8)
    vamp, normal = twins_encoding_alike()
    vamp_terms, _ = loss_terms(vamp, x, batch_size=4, seed=0)
    normal_terms, _ = loss_terms(normal, x, batch_size=4, seed=0)
    assert vamp_terms["kl_per_image"] == pytest.approx(0.0, abs=1e-5)
    assert normal_terms["kl_per_image"] == pytest.approx(2 * -0.5 * (1 - 0.5 - 0.09 - np.exp(-0.5)), rel=1e-5)
    # The same draws decoded: the negative ELBOs differ by the KL alone.
    assert normal_terms["neg_elbo_nats"] - vamp_terms["neg_elbo_nats"] == pytest.approx(normal_terms["kl_per_image"], abs=1e-3)

    rng = np.random.default_rng(1)
    rng.integers(3, size=5)
    expected = 0.3 + np.exp(-0.25) * rng.standard_normal((5, 2))
    np.testing.assert_allclose(prior_points(vamp, 5, seed=1), expected, rtol=1e-5)
    np.testing.assert_array_equal(prior_points(normal, 5, seed=1), np.random.default_rng(1).standard_normal((5, 2)).astype("float32"))
