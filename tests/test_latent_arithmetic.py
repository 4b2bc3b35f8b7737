"""Evaluation on images read from shards, and the latent-arithmetic arrays and picture, on a tiny untrained RGB VAE."""

from __future__ import annotations

import dataclasses

import keras
import matplotlib.image
import numpy as np
import pytest
from tiny import tiny_network

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.data.processed import load_splits, write_splits
from vaelab.evaluation import metrics as evaluation
from vaelab.evaluation import plots
from vaelab.model import build_vae

TINY = {
    **tiny_network([4, 4], [4, 3]),
    "train.z_dim": 3,
    "evaluate.batch_size": 7,
}
SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def config() -> Config:
    return with_overrides(Config(), TINY)


@pytest.fixture(scope="module")
def model(config):
    return build_vae(SHAPE, config.train, seed=0)


@pytest.fixture
def on_disk(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 8), ("test", 20)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
        arrays[f"y_{split}"] = (np.arange(n) % 2).astype(np.uint8)
    write_splits(tmp_path, arrays, {"dataset": "image_folder", "class_names": ["neutral", "smiling"]})
    return load_splits(tmp_path)


def test_metrics_from_shards_equal_metrics_from_the_same_arrays_in_memory(model, config, on_disk) -> None:
    in_memory = dataclasses.replace(on_disk, **{f"x_{s}": np.asarray(getattr(on_disk, f"x_{s}")) for s in ("train", "val", "test")})
    assert evaluation.evaluate(model, on_disk, config) == evaluation.evaluate(model, in_memory, config)
    unlabelled = dataclasses.replace(on_disk, class_names=())
    assert set(evaluation.evaluate(model, unlabelled, config)) == {
        "test_mse_per_pixel",
        "test_kl_per_image",
        "test_loss",
        "test_neg_elbo_k1_grayscale_nats",
    }


def test_encode_means_reads_only_the_first_limit_images(model, on_disk) -> None:
    limited = evaluation.encode_means(model, on_disk.x_test, batch_size=4, limit=9)
    expected = keras.ops.convert_to_numpy(model.encode(np.asarray(on_disk.x_test)[:9])[0])
    assert limited.shape == (9, 3)
    np.testing.assert_allclose(limited, expected, rtol=1e-5, atol=1e-6)


def test_latent_arithmetic_adds_multiples_of_the_class_step(model, on_disk) -> None:
    mu = evaluation.encode_means(model, on_disk.x_test, batch_size=7)
    labels = on_disk.y_test
    strengths = (0.0, 1.0, 2.0)

    moved = evaluation.latent_arithmetic(model, on_disk.x_test, mu, labels, strengths, batch_size=5, rows=3)
    assert moved is not None  # both classes are in the test split
    originals, shifted = moved

    chosen = np.flatnonzero(labels == 0)[:3]  # images 0, 2, 4
    np.testing.assert_array_equal(originals, np.asarray(on_disk.x_test)[chosen])
    step = mu[labels == 1].mean(axis=0) - mu[labels == 0].mean(axis=0)
    assert shifted.shape == (3, 3, *SHAPE)
    for row, index in enumerate(chosen):
        for col, s in enumerate(strengths):
            expected = keras.ops.convert_to_numpy(model.decoder(mu[index : index + 1] + s * step[None]))[0]
            np.testing.assert_allclose(shifted[row, col], expected, rtol=1e-5, atol=1e-6)
    assert evaluation.latent_arithmetic(model, on_disk.x_test, mu, np.zeros_like(labels), strengths, 5) is None


def test_latent_arithmetic_png_has_a_column_per_strength_plus_the_original(model, on_disk, tmp_path) -> None:
    mu = evaluation.encode_means(model, on_disk.x_test, batch_size=7)
    result = evaluation.latent_arithmetic(model, on_disk.x_test, mu, on_disk.y_test, plots.ARITHMETIC_STRENGTHS, 7, rows=4)

    plots.plot_latent_arithmetic(result, plots.ARITHMETIC_STRENGTHS, ("neutral", "smiling"), tmp_path / "a.png")
    pixels = matplotlib.image.imread(tmp_path / "a.png")
    columns = len(plots.ARITHMETIC_STRENGTHS) + 1
    assert pixels.shape[:2] == (round((4 * plots.ARITHMETIC_TILE + 0.9) * plots.DPI), round(columns * plots.ARITHMETIC_TILE * plots.DPI))
    assert np.any(np.abs(pixels[..., 0] - pixels[..., 2]) > 0.1)  # drawn in colour
    plots.plot_latent_arithmetic(None, plots.ARITHMETIC_STRENGTHS, ("a", "b"), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
