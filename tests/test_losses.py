"""The loss terms against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaelab.losses import (
    bernoulli_cross_entropy,
    bernoulli_log_likelihood,
    bernoulli_negative_elbo,
    kl_divergence,
    reconstruction_error,
    vae_loss,
)


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
