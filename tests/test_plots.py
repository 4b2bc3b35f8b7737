"""The PNG writers: real files read back with matplotlib, for grayscale and RGB images."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from vaelab import plots


def _images(count: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 28, 28, channels), dtype=np.float32)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0  # something was drawn, not a blank canvas
    return pixels.shape[:2]


def test_image_grid_places_images_row_by_row_and_leaves_missing_tiles_black():
    images = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)

    grid = plots.image_grid(images, rows=2, cols=2)

    assert grid.shape == (4, 4, 1)
    expected = np.array(
        [
            [0, 1, 4, 5],
            [2, 3, 6, 7],
            [8, 9, 0, 0],
            [10, 11, 0, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(grid[..., 0], expected)


def test_image_grid_draws_white_gaps_between_tiles():
    images = np.zeros((4, 2, 3, 1), dtype=np.float32)

    grid = plots.image_grid(images, rows=2, cols=2, gap=1)

    assert grid.shape == (5, 7, 1)
    np.testing.assert_array_equal(grid[2, :, 0], np.ones(7))
    np.testing.assert_array_equal(grid[:, 3, 0], np.ones(5))
    assert grid.sum() == 5 + 7 - 1


def test_image_grid_keeps_rgb_channels_and_drops_images_beyond_the_grid():
    images = np.stack([np.full((2, 3, 3), value, dtype=np.float32) for value in (0.1, 0.2, 0.3)])

    grid = plots.image_grid(images, rows=1, cols=2)

    assert grid.shape == (2, 6, 3)
    np.testing.assert_allclose(grid[:, :3], 0.1)
    np.testing.assert_allclose(grid[:, 3:], 0.2)


def test_image_grid_rejects_a_flat_array():
    with pytest.raises(ValueError, match=r"received shape \(5, 4\)"):
        plots.image_grid(np.zeros((5, 4)), 1, 5)


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstructions_png_is_one_inch_per_image_column(tmp_path, channels):
    originals = _images(10, channels)
    path = tmp_path / "reconstructions.png"

    plots.plot_reconstructions(originals, 1.0 - originals, path)

    assert _png_size(path) == (250, 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["reconstructions.png"]  # no temporary file left


def test_reconstructions_of_few_images_keep_a_minimum_width(tmp_path):
    path = tmp_path / "r.png"
    plots.plot_reconstructions(_images(2, 1), _images(2, 1, seed=1), path)
    assert _png_size(path) == (250, 400)


def test_reconstructions_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_reconstructions(_images(3, 1), _images(2, 1), tmp_path / "r.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("z_dim", [1, 2, 5])
def test_latent_space_png_for_any_latent_size(tmp_path, z_dim):
    rng = np.random.default_rng(z_dim)
    mu = rng.normal(size=(300, z_dim)).astype(np.float32)
    labels = rng.integers(0, 10, size=300).astype(np.uint8)
    path = tmp_path / "latent.png"

    plots.plot_latent_space(mu, labels, [f"digit {i}" for i in range(10)], path)

    assert _png_size(path) == (700, 800)


def test_latent_space_without_labels(tmp_path):
    path = tmp_path / "latent.png"
    plots.plot_latent_space(np.random.default_rng(0).normal(size=(50, 3)), None, None, path)
    assert _png_size(path) == (700, 800)


def test_pca_projection_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    # Wide spread along (1, 1, 0)/sqrt(2), little elsewhere: PC1 must be that direction.
    t = rng.normal(size=(500, 1)) * 10
    mu = t * np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2) + rng.normal(size=(500, 3)) * 0.01

    points, names, _ = plots._project_2d(mu)

    assert points.shape == (500, 2)
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(t[:, 0] - t.mean()), atol=0.05)
    assert names[0].startswith("PC1 (100% of variance)")


@pytest.mark.parametrize("channels", [1, 3])
def test_manifold_and_samples_pngs(tmp_path, channels):
    grid = _images(15 * 15, channels).reshape(15, 15, 28, 28, channels)
    plots.plot_manifold(grid, tmp_path / "manifold.png")
    plots.plot_samples(_images(64, channels), tmp_path / "samples.png")

    assert _png_size(tmp_path / "manifold.png") == (750, 700)
    assert _png_size(tmp_path / "samples.png") == (750, 700)


def test_manifold_rejects_a_flat_list_of_images(tmp_path):
    with pytest.raises(ValueError, match=r"\(rows, cols, H, W, C\)"):
        plots.plot_manifold(np.zeros((9, 28)), tmp_path / "m.png")


def test_loss_curves_png_with_gaps_in_the_history(tmp_path):
    history = [
        {"epoch": e, "loss": 60.0 / e, "reconstruction_loss": 0.05 / e, "kl_loss": 3.0 + e,
         "val_loss": 62.0 / e, "val_reconstruction_loss": 0.052 / e, "val_kl_loss": None if e == 2 else 3.1 + e}
        for e in (1, 2, 3)
    ]
    path = tmp_path / "loss_curves.png"

    plots.plot_loss_curves(history, path)

    assert _png_size(path) == (400, 1300)

