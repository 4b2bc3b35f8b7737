"""The loss terms against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaelab.losses import bernoulli_negative_elbo, kl_divergence, reconstruction_error, vae_loss

# Two 1x2 single-channel images: x = [1, 0] and [0, 1], reconstructed as [0.8, 0.4] and [0.5, 0.5].
X = np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32").reshape(2, 1, 2, 1)
X_HAT = np.array([[0.8, 0.4], [0.5, 0.5]], dtype="float32").reshape(2, 1, 2, 1)
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
    error = np.asarray(reconstruction_error(X, X_HAT, "mse"))
    assert error.shape == (2,)
    np.testing.assert_allclose(error, MSE_MEANS, rtol=1e-6)


def test_bce_is_the_per_example_mean_over_pixels():
    error = np.asarray(reconstruction_error(X, X_HAT, "bce"))
    np.testing.assert_allclose(error, [s / 2 for s in BCE_SUMS], rtol=1e-6)


def test_bce_stays_finite_when_the_decoder_saturates():
    x = np.array([1.0, 0.0], dtype="float32").reshape(1, 1, 2, 1)
    x_hat = np.array([0.0, 1.0], dtype="float32").reshape(1, 1, 2, 1)
    error = float(np.asarray(reconstruction_error(x, x_hat, "bce"))[0])
    # x_hat is clipped to [eps, 1 - eps] with eps = 1e-7; in float32, 1 - (1 - eps) is about 1.19e-7
    eps = np.float32(1e-7)
    expected = (-math.log(eps) - math.log(np.float32(1) - (np.float32(1) - eps))) / 2
    assert error == pytest.approx(expected, rel=1e-5)


def test_an_unknown_reconstruction_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown reconstruction kind 'l1'; allowed: mse, bce"):
        reconstruction_error(X, X_HAT, "l1")


def test_vae_loss_weights_the_reconstruction_and_adds_the_kl():
    mu = np.array([[1.0, 0.0], [0.0, 0.0]], dtype="float32")  # KL 0.5 and 0: batch mean 0.25
    log_var = np.zeros((2, 2), dtype="float32")
    total, reconstruction, kl = (float(v) for v in vae_loss(X, X_HAT, mu, log_var, 1000.0, "mse"))
    expected_reconstruction = sum(MSE_MEANS) / 2
    assert reconstruction == pytest.approx(expected_reconstruction, rel=1e-6)
    assert kl == pytest.approx(0.25, rel=1e-6)
    assert total == pytest.approx(1000.0 * expected_reconstruction + 0.25, rel=1e-6)


def test_bernoulli_negative_elbo_sums_pixels_and_adds_the_kl():
    mu = np.array([[1.0, 1.0], [0.0, 0.0]], dtype="float32")  # KL 1.0 and 0
    log_var = np.zeros((2, 2), dtype="float32")
    nelbo = np.asarray(bernoulli_negative_elbo(X, X_HAT, mu, log_var))
    np.testing.assert_allclose(nelbo, [BCE_SUMS[0] + 1.0, BCE_SUMS[1]], rtol=1e-6)
