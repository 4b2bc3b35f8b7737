"""Evaluation metrics and plot arrays on a tiny untrained VAE and small synthetic splits."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import keras
import numpy as np
import pytest
from tiny import tiny_network

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.data.processed import Splits
from vaelab.errors import DataError
from vaelab.evaluation import metrics as evaluation
from vaelab.model import build_vae

TINY = {
    **tiny_network([4, 4], [4, 1]),
    "evaluate.batch_size": 1000,
}
METRIC_KEYS = {
    "test_mse_per_pixel",
    "test_kl_per_image",
    "test_loss",
    "test_neg_elbo_k1_grayscale_nats",
    "latent_knn_accuracy",
    "latent_logreg_accuracy",
}


def _splits(seed: int = 0, n_train: int = 60, n_test: int = 30, channels: int = 1) -> Splits:
    rng = np.random.default_rng(seed)

    def images(n):
        return rng.random((n, 28, 28, channels), dtype=np.float32)

    def labels(n):
        return rng.integers(0, 3, size=n).astype(np.uint8)

    return Splits(
        images(n_train), labels(n_train), images(10), labels(10), images(n_test), labels(n_test), (28, 28, channels), ("a", "b", "c")
    )


@pytest.fixture(scope="module")
def config() -> Config:
    return with_overrides(Config(), TINY)


@pytest.fixture(scope="module")
def model(config):
    return build_vae((28, 28, 1), config.train, seed=0)


@pytest.fixture(scope="module")
def splits() -> Splits:
    return _splits()


def test_evaluate_returns_every_metric_as_a_finite_float(model, splits, config):
    metrics = evaluation.evaluate(model, splits, config)

    assert set(metrics) == METRIC_KEYS
    assert all(type(value) is float and math.isfinite(value) for value in metrics.values())
    assert metrics["test_neg_elbo_k1_grayscale_nats"] >= 0
    assert metrics["test_kl_per_image"] >= 0
    assert 0 <= metrics["latent_knn_accuracy"] <= 1
    assert 0 <= metrics["latent_logreg_accuracy"] <= 1


def test_metrics_match_a_numpy_computation_with_the_same_noise(model, splits, config):
    """One batch holds the whole test set, so the seeded generator draws eps exactly once."""
    metrics = evaluation.evaluate(model, splits, config)

    x = splits.x_test.astype(np.float64)
    mu, log_var = (keras.ops.convert_to_numpy(t).astype(np.float64) for t in model.encode(splits.x_test))
    eps = keras.ops.convert_to_numpy(keras.random.normal(mu.shape, seed=keras.random.SeedGenerator(config.base.seed)))
    z = (mu + np.exp(0.5 * log_var) * eps).astype(np.float32)
    x_hat_mean = keras.ops.convert_to_numpy(model.decoder(mu.astype(np.float32))).astype(np.float64)
    logits = keras.ops.convert_to_numpy(model.decode_logits(z)).astype(np.float64)
    x_hat = 1.0 / (1.0 + np.exp(-logits))
    kl = -0.5 * np.sum(1 + log_var - mu**2 - np.exp(log_var), axis=1)
    squared_error_sampled = np.mean((x - x_hat) ** 2, axis=(1, 2, 3))
    # -(x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))), with log sigmoid(l) = -log(1 + e^-l)
    cross_entropy = np.sum(x * np.logaddexp(0, -logits) + (1 - x) * np.logaddexp(0, logits), axis=(1, 2, 3))

    assert metrics["test_mse_per_pixel"] == pytest.approx(np.mean((x - x_hat_mean) ** 2), rel=1e-5)
    assert metrics["test_kl_per_image"] == pytest.approx(np.mean(kl), rel=1e-4)
    assert metrics["test_loss"] == pytest.approx(np.mean(1000.0 * squared_error_sampled + kl), rel=1e-4)
    assert metrics["test_neg_elbo_k1_grayscale_nats"] == pytest.approx(np.mean(cross_entropy + kl), rel=1e-4)


def test_deterministic_metrics_do_not_depend_on_the_batch_size(model, splits, config):
    whole = evaluation.evaluate(model, splits, config)
    batched = evaluation.evaluate(model, splits, with_overrides(config, {"evaluate.batch_size": 7}))

    for key in ("test_mse_per_pixel", "test_kl_per_image", "latent_knn_accuracy", "latent_logreg_accuracy"):
        assert batched[key] == pytest.approx(whole[key], rel=1e-5), key


def test_evaluate_is_reproducible(model, splits, config):
    assert evaluation.evaluate(model, splits, config) == evaluation.evaluate(model, splits, config)


def test_latent_classifiers_read_the_class_off_distinct_images(model, config):
    """Every image of a class is the same picture, so its mu is the same point: both classifiers are exact."""
    rng = np.random.default_rng(1)
    prototypes = rng.random((3, 28, 28, 1), dtype=np.float32)
    y_train, y_test = np.arange(30) % 3, np.arange(12)[::-1] % 3
    splits = Splits(prototypes[y_train], y_train, prototypes[:1], y_train[:1], prototypes[y_test], y_test, (28, 28, 1), ("a", "b", "c"))

    metrics = evaluation.evaluate(model, splits, config)

    assert metrics["latent_knn_accuracy"] == 1.0
    assert metrics["latent_logreg_accuracy"] == 1.0


def test_a_single_training_class_predicts_that_class(model, config):
    splits = dataclasses.replace(_splits(n_test=20), y_train=np.zeros(60, np.uint8), y_test=np.array([0, 1, 0, 2] * 5, np.uint8))

    metrics = evaluation.evaluate(model, splits, config)

    assert metrics["latent_logreg_accuracy"] == 0.5
    assert metrics["latent_knn_accuracy"] == 0.5


def test_an_empty_test_split_is_a_data_error(model, config):
    splits = _splits(n_test=0)
    with pytest.raises(DataError, match="test split is empty"):
        evaluation.evaluate(model, splits, config)


def test_encode_means_and_reconstruct_in_batches(model, splits):
    mu = evaluation.encode_means(model, splits.x_test, batch_size=7)
    images = evaluation.reconstruct(model, splits.x_test, batch_size=7)

    expected_mu = keras.ops.convert_to_numpy(model.encode(splits.x_test)[0])
    np.testing.assert_allclose(mu, expected_mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(images, keras.ops.convert_to_numpy(model.decoder(expected_mu)), rtol=1e-5, atol=1e-6)
    assert images.shape == (30, 28, 28, 1)


def test_sample_prior_is_seeded(model):
    first = evaluation.sample_prior(model, 9, seed=3)
    again = evaluation.sample_prior(model, 9, seed=3)
    other = evaluation.sample_prior(model, 9, seed=4)

    assert first.shape == (9, 28, 28, 1)
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_decode_grid_covers_the_central_quantiles_with_z1_growing_upwards(model):
    grid = evaluation.decode_grid(model, 4, span=0.9)

    assert grid.shape == (4, 4, 28, 28, 1)
    low, high = NormalDist().inv_cdf(0.05), NormalDist().inv_cdf(0.95)
    corners = np.array([[low, high], [high, low]], dtype=np.float32)  # top-left, bottom-right
    decoded = keras.ops.convert_to_numpy(model.decoder(corners))
    np.testing.assert_allclose(grid[0, 0], decoded[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grid[-1, -1], decoded[1], rtol=1e-5, atol=1e-6)


def test_decode_grid_needs_a_two_dimensional_latent_space(config):
    model = build_vae((28, 28, 1), config.train.model_copy(update={"z_dim": 3}), seed=0)
    with pytest.raises(ValueError, match="z_dim 2; this model has z_dim 3"):
        evaluation.decode_grid(model, 5)


def test_decode_grid_rejects_a_span_outside_zero_one(model):
    with pytest.raises(ValueError, match="span=1.0"):
        evaluation.decode_grid(model, 5, span=1.0)


def test_mean_negative_elbo_is_the_test_metric_on_the_same_images(model, splits, config) -> None:
    from vaelab.evaluation.metrics import evaluate, mean_negative_elbo

    expected = evaluate(model, splits, config)["test_neg_elbo_k1_grayscale_nats"]
    assert mean_negative_elbo(model, splits.x_test, config.evaluate.batch_size, config.base.seed) == expected


def test_the_negative_elbo_of_binarized_data_is_named_so(model, splits, config) -> None:
    binarized = with_overrides(config, {"data.binarize": "dynamic"})
    metrics = evaluation.evaluate(model, splits, binarized)
    assert set(metrics) == METRIC_KEYS - {"test_neg_elbo_k1_grayscale_nats"} | {"test_neg_elbo_k1_binarized_nats"}
    grey = evaluation.evaluate(model, splits, config)["test_neg_elbo_k1_grayscale_nats"]
    assert metrics["test_neg_elbo_k1_binarized_nats"] == grey  # the name follows the setting; the sum is the same
