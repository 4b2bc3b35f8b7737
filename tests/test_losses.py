"""The loss terms against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaelab.losses import (
    bernoulli_cross_entropy,
    bernoulli_log_likelihood,
    bernoulli_negative_elbo,
    gaussian_log_density,
    iwae_bound,
    iwae_loss,
    kl_divergence,
    mixture_log_density,
    reconstruction_error,
    standard_normal_log_density,
    vae_loss,
)

LOG_2PI = math.log(2 * math.pi)


def logit(p: float) -> float:
    return math.log(p) - math.log(1.0 - p)


# Two 1x2 single-channel images: x = [1, 0] and [0, 1], reconstructed with probabilities [0.8, 0.4] and
# [0.5, 0.5]; the losses take the decoder's logits, log(p) - log(1 - p).
X = np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32").reshape(2, 1, 2, 1)
LOGITS = np.array([[logit(0.8), logit(0.4)], [0.0, 0.0]], dtype="float32").reshape(2, 1, 2, 1)
# Per-pixel cross-entropies: -ln 0.8 and -ln 0.6 for the first image, -ln 0.5 twice for the second.
BCE_SUMS = [-math.log(0.8) - math.log(0.6), -2 * math.log(0.5)]
MSE_MEANS = [(0.2**2 + 0.4**2) / 2, 0.25]


def test_kl_is_zero_for_the_prior_itself():
    kl = np.asarray(kl_divergence(np.zeros((3, 4)), np.zeros((3, 4))))
    assert kl.shape == (3,)
    np.testing.assert_array_equal(kl, 0.0)


def test_kl_of_a_unit_shift_is_one_half_per_dimension():
    kl = np.asarray(kl_divergence(np.ones((2, 3)), np.zeros((2, 3))))
    np.testing.assert_allclose(kl, [1.5, 1.5], rtol=1e-6)


def test_kl_of_a_wider_gaussian():
    # sigma^2 = 2: -0.5 * (1 + ln 2 - 0 - 2) per dimension
    kl = np.asarray(kl_divergence(np.zeros((1, 2)), np.full((1, 2), math.log(2.0))))
    np.testing.assert_allclose(kl, [2 * 0.5 * (1 - math.log(2.0))], rtol=1e-6)


def test_mse_is_the_per_example_mean_over_pixels():
    error = np.asarray(reconstruction_error(X, LOGITS, "mse"))
    assert error.shape == (2,)
    np.testing.assert_allclose(error, MSE_MEANS, rtol=1e-6)


def test_bce_is_the_per_example_mean_over_pixels():
    error = np.asarray(reconstruction_error(X, LOGITS, "bce"))
    np.testing.assert_allclose(error, [s / 2 for s in BCE_SUMS], rtol=1e-6)


def test_bce_from_logits_is_exact_where_the_sigmoid_saturates():
    # sigmoid(+-100) rounds to 1 or 0 in float32, so a cross-entropy of probabilities would take log(0) or
    # need clipping; from logits, -log sigmoid(-100) = 100 + log(1 + e^-100), which is 100 in float32.
    x = np.array([1.0, 0.0], dtype="float32").reshape(1, 1, 2, 1)
    wrong = np.array([-100.0, 100.0], dtype="float32").reshape(1, 1, 2, 1)
    right = -wrong
    assert np.asarray(bernoulli_cross_entropy(x, wrong)).ravel().tolist() == [100.0, 100.0]
    assert float(np.asarray(reconstruction_error(x, wrong, "bce"))[0]) == 100.0
    # log(1 + e^-100) = 3.7e-44 survives only as a float32 subnormal, which TensorFlow may flush to 0.
    np.testing.assert_allclose(np.asarray(bernoulli_cross_entropy(x, right)).ravel(), [0.0, 0.0], rtol=0, atol=1e-43)
    assert float(np.asarray(reconstruction_error(x, right, "bce"))[0]) == pytest.approx(0.0, abs=1e-43)


def test_bce_of_grey_levels_is_a_cross_entropy():
    # x = 0.25 against p = sigmoid(0) = 0.5: -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2, whatever the grey level.
    x = np.array([0.25, 0.9], dtype="float32").reshape(1, 1, 2, 1)
    logits = np.array([0.0, logit(0.9)], dtype="float32").reshape(1, 1, 2, 1)
    expected = [math.log(2.0), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    np.testing.assert_allclose(np.asarray(bernoulli_cross_entropy(x, logits)).ravel(), expected, rtol=1e-6)


def test_an_unknown_reconstruction_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown reconstruction kind 'l1'; allowed: mse, bce"):
        reconstruction_error(X, LOGITS, "l1")


def test_vae_loss_weights_the_reconstruction_and_adds_the_kl():
    mu = np.array([[1.0, 0.0], [0.0, 0.0]], dtype="float32")  # KL 0.5 and 0: batch mean 0.25
    log_var = np.zeros((2, 2), dtype="float32")
    total, reconstruction, kl = (float(v) for v in vae_loss(X, LOGITS, mu, log_var, 1000.0, "mse"))
    expected_reconstruction = sum(MSE_MEANS) / 2
    assert reconstruction == pytest.approx(expected_reconstruction, rel=1e-6)
    assert kl == pytest.approx(0.25, rel=1e-6)
    assert total == pytest.approx(1000.0 * expected_reconstruction + 0.25, rel=1e-6)


def test_bernoulli_negative_elbo_sums_pixels_and_adds_the_kl():
    mu = np.array([[1.0, 1.0], [0.0, 0.0]], dtype="float32")  # KL 1.0 and 0
    log_var = np.zeros((2, 2), dtype="float32")
    nelbo = np.asarray(bernoulli_negative_elbo(X, LOGITS, mu, log_var))
    np.testing.assert_allclose(nelbo, [BCE_SUMS[0] + 1.0, BCE_SUMS[1]], rtol=1e-6)


def test_bernoulli_log_likelihood_is_the_negative_cross_entropy_summed_over_pixels():
    log_likelihood = np.asarray(bernoulli_log_likelihood(X, LOGITS))
    assert log_likelihood.shape == (2,)
    np.testing.assert_allclose(log_likelihood, [-s for s in BCE_SUMS], rtol=1e-6)


def test_kl_warm_up_weights_only_the_kl_term():
    mu = np.array([[1.0, 0.0], [0.0, 0.0]], dtype="float32")  # KL 0.5 and 0: batch mean 0.25
    log_var = np.zeros((2, 2), dtype="float32")
    total, reconstruction, kl = (float(v) for v in vae_loss(X, LOGITS, mu, log_var, 2.0, "bce", kl_weight=0.4))
    expected_reconstruction = sum(BCE_SUMS) / 4  # mean over 2 pixels, then over 2 images
    assert reconstruction == pytest.approx(expected_reconstruction, rel=1e-6)
    assert kl == pytest.approx(0.25, rel=1e-6)  # reported unweighted
    assert total == pytest.approx(2.0 * expected_reconstruction + 0.4 * 0.25, rel=1e-6)


def test_gaussian_log_density_by_hand():
    # z = (2, 0) under N((1, 0), diag(4, 1)): -0.5 [(ln 2pi + ln 4 + 1/4) + (ln 2pi + 0 + 0)]
    z = np.array([[2.0, 0.0]], dtype="float32")
    density = np.asarray(gaussian_log_density(z, [[1.0, 0.0]], [[math.log(4.0), 0.0]]))
    np.testing.assert_allclose(density, [-0.5 * (2 * LOG_2PI + math.log(4.0) + 0.25)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(standard_normal_log_density(z)), [-0.5 * (2 * LOG_2PI + 4.0)], rtol=1e-6)


def test_mixture_log_density_of_two_gaussians_by_hand():
    # In one dimension, at z = 1: half of N(1; 0, 1) plus half of N(1; 2, 4).
    means = np.array([[0.0], [2.0]], dtype="float32")
    log_vars = np.array([[0.0], [math.log(4.0)]], dtype="float32")
    first = math.exp(-0.5) / math.sqrt(2 * math.pi)
    second = math.exp(-1 / 8) / math.sqrt(2 * math.pi * 4)
    density = np.asarray(mixture_log_density(np.array([[1.0], [0.0]], dtype="float32"), means, log_vars))
    at_zero = 0.5 / math.sqrt(2 * math.pi) + 0.5 * math.exp(-4 / 8) / math.sqrt(2 * math.pi * 4)
    np.testing.assert_allclose(density, [math.log(0.5 * first + 0.5 * second), math.log(at_zero)], rtol=1e-6)


def test_a_mixture_of_one_standard_normal_is_the_standard_normal():
    z = np.array([[0.3, -1.2], [2.0, 0.5]], dtype="float32")
    one = np.asarray(mixture_log_density(z, np.zeros((1, 2), "float32"), np.zeros((1, 2), "float32")))
    np.testing.assert_allclose(one, np.asarray(standard_normal_log_density(z)), rtol=1e-6)


def test_mixture_log_density_stays_finite_far_from_every_component():
    # exp(-500,000) is 0 in any float; the log-sum-exp still gives -0.5 (ln 2pi + 1000^2), twice the same component.
    z = np.array([[1000.0]], dtype="float32")
    density = np.asarray(mixture_log_density(z, np.zeros((2, 1), "float32"), np.zeros((2, 1), "float32")))
    np.testing.assert_allclose(density, [-0.5 * (LOG_2PI + 1e6)], rtol=1e-6)


def test_iwae_bound_is_the_log_mean_of_the_weights():
    # Weights 1 and 3 average to 2; one weight is its own log.
    log_weights = np.array([[0.0, math.log(3.0)]], dtype="float32")
    np.testing.assert_allclose(np.asarray(iwae_bound(log_weights)), [math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(iwae_bound(np.array([[-7.5]], "float32"))), [-7.5], rtol=1e-6)


@pytest.mark.parametrize("offset", [-1e4, 1e4, -3e37])
def test_iwae_bound_is_finite_for_weights_far_beyond_exp_range(offset):
    # exp(+-10^4) over- or underflows float32; shifted by the maximum, the answer is offset + ln 2 (or offset).
    log_weights = np.array([[offset, offset + math.log(3.0)]], dtype="float32")
    bound = float(np.asarray(iwae_bound(log_weights))[0])
    assert math.isfinite(bound)
    assert bound == pytest.approx(np.float32(offset) + math.log(2.0), rel=1e-6, abs=1e-3)


def test_iwae_loss_by_hand_with_and_without_warm_up():
    # One image, two draws: log p(x|z) = -2, -4; log p(z) = -1, -1; log q(z|x) = -0.5, -1.5, so log q - log p = 0.5, -0.5.
    log_likelihood = np.array([[-2.0, -4.0]], dtype="float32")
    log_prior = np.array([[-1.0, -1.0]], dtype="float32")
    log_posterior = np.array([[-0.5, -1.5]], dtype="float32")
    for kl_weight, log_weights in ((1.0, (-2.5, -3.5)), (0.5, (-2.25, -3.75))):
        total, reconstruction, kl = (float(v) for v in iwae_loss(log_likelihood, log_prior, log_posterior, kl_weight))
        expected = -math.log((math.exp(log_weights[0]) + math.exp(log_weights[1])) / 2)
        assert total == pytest.approx(expected, rel=1e-6)
        assert reconstruction == pytest.approx(3.0, rel=1e-6)  # unweighted means over the draws
        assert kl == pytest.approx(0.0, abs=1e-6)


def test_iwae_with_one_draw_from_the_prior_itself_is_the_negative_elbo():
    # q(z|x) = N(0, I) = p(z): the closed-form KL is 0 and log p(z) - log q(z|x) is 0 at every z, so with one
    # draw the IWAE loss is the Bernoulli cross-entropy summed over pixels, the negative ELBO, exactly.
    z = np.array([[0.7, -1.1], [0.2, 2.0]], dtype="float32")
    zeros = np.zeros_like(z)
    log_likelihood = np.asarray(bernoulli_log_likelihood(X, LOGITS)).reshape(2, 1)
    log_prior = np.asarray(standard_normal_log_density(z)).reshape(2, 1)
    log_posterior = np.asarray(gaussian_log_density(z, zeros, zeros)).reshape(2, 1)
    total = float(iwae_loss(log_likelihood, log_prior, log_posterior)[0])
    assert total == pytest.approx(float(np.mean(bernoulli_negative_elbo(X, LOGITS, zeros, zeros))), rel=1e-6)
    assert total == pytest.approx(sum(BCE_SUMS) / 2, rel=1e-6)


def test_the_iwae_bound_rises_with_k_over_fixed_draws():
    # Burda et al.'s theorem on one fixed set of 6 draws: the mean bound over all k-subsets of them never falls
    # as k grows (Jensen: a set's log-mean is at least the mean of its (k-1)-subsets' log-means), and rises
    # strictly unless all weights are equal. k = 1 is the mean log weight (the ELBO), k = 6 the log-mean.
    from itertools import combinations

    log_weights = np.random.default_rng(3).normal(-90.0, 4.0, size=6).astype("float32")
    bounds = [
        float(np.mean(np.asarray(iwae_bound(np.array([[log_weights[i] for i in subset] for subset in combinations(range(6), k)])))))
        for k in range(1, 7)
    ]
    assert bounds[0] == pytest.approx(float(np.mean(log_weights)), rel=1e-6)
    assert bounds[-1] == pytest.approx(math.log(np.mean(np.exp(log_weights.astype("float64") + 90.0))) - 90.0, rel=1e-6)
    assert all(later > earlier for earlier, later in zip(bounds, bounds[1:], strict=False))
