"""The PNG writers: real files read back, for grayscale and RGB images.

The pixel sizes follow from constants, so they prove little on their own; the plot tests also read back what
the PNG shows (the images, the curves, the points) at the places the figure's artists say they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from vaelab.evaluation import plots

# The gray colour map has 256 levels and the PNG 8 bits per channel: a drawn value is within 2/255 of its own.
SHADE_TOLERANCE = 2.5 / 255


def _images(count: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 28, 28, channels), dtype=np.float32)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure a plot function saves, in order; kept after the function closes it, artists and all."""
    saved: list[Figure] = []
    savefig = Figure.savefig

    def keep(figure: Figure, *args, **kwargs):
        saved.append(figure)
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def _pixels(path: Path) -> np.ndarray:
    """The PNG as (height, width, 3) floats in [0, 1], row 0 at the top."""
    assert path.stat().st_size > 1000
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


def _png_size(path: Path) -> tuple[int, int]:
    return _pixels(path).shape[:2]


def _at(pixels: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The pixels under display points ``xy`` (N, 2); display y counts from the bottom, PNG rows from the top."""
    return pixels[(len(pixels) - xy[:, 1]).astype(int), xy[:, 0].astype(int)]


def _assert_shows(path: Path, figure: Figure, expected: np.ndarray) -> None:
    """The figure's one image, read back from the PNG where matplotlib placed it, equals ``expected`` (H, W, C).

    One PNG pixel is read from the centre of each image pixel; a grayscale image is drawn as equal R, G, B.
    """
    (axes,) = figure.axes
    (image,) = axes.images
    box = image.get_window_extent()
    height, width = expected.shape[:2]
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    centres = np.stack(np.meshgrid(box.x0 + cols * box.width / width, box.y1 - rows * box.height / height), axis=-1)
    shown = _at(_pixels(path), centres.reshape(-1, 2)).reshape(height, width, 3)
    np.testing.assert_allclose(shown, np.broadcast_to(expected, (height, width, 3)), atol=SHADE_TOLERANCE)


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
def test_reconstructions_png_is_one_inch_per_image_column(tmp_path, channels, figures):
    originals = _images(10, channels)
    path = tmp_path / "reconstructions.png"

    plots.plot_reconstructions(originals, 1.0 - originals, path)

    assert _png_size(path) == (250, 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["reconstructions.png"]  # no temporary file left
    # Originals on top, each one's reconstruction below it, 2 white pixels apart.
    _assert_shows(path, figures[-1], plots.image_grid(np.concatenate([originals, 1.0 - originals]), 2, 10, gap=2))


def test_reconstructions_of_few_images_keep_a_minimum_width(tmp_path, figures):
    path = tmp_path / "r.png"
    originals, reconstructions = _images(2, 1), _images(2, 1, seed=1)
    plots.plot_reconstructions(originals, reconstructions, path)
    assert _png_size(path) == (250, 400)
    _assert_shows(path, figures[-1], plots.image_grid(np.concatenate([originals, reconstructions]), 2, 2, gap=2))


def test_reconstructions_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_reconstructions(_images(3, 1), _images(2, 1), tmp_path / "r.png")
    assert not list(tmp_path.iterdir())


def _assert_points_drawn(path: Path, axes, points: np.ndarray) -> None:
    """``points`` (N, 2, data coordinates) are where the PNG shows a marker: no pixel under them is near white.

    Every tab10 colour at the markers' alpha 0.6 over white keeps a channel at or below 0.7.
    """
    under = _at(_pixels(path), axes.transData.transform(points))
    assert np.all(under.min(axis=1) < 0.8), f"{np.sum(under.min(axis=1) >= 0.8)} of {len(points)} points not drawn"


@pytest.mark.parametrize("z_dim", [1, 2, 5])
def test_latent_space_png_for_any_latent_size(tmp_path, z_dim, figures):
    rng = np.random.default_rng(z_dim)
    mu = rng.normal(size=(300, z_dim)).astype(np.float32)
    labels = rng.integers(0, 10, size=300).astype(np.uint8)
    path = tmp_path / "latent.png"

    plots.plot_latent_space(mu, labels, [f"digit {i}" for i in range(10)], path)

    assert _png_size(path) == (700, 800)
    (axes,) = figures[-1].axes
    if z_dim == 1:  # z[0] along a line
        placed = np.column_stack([mu[:, 0], np.zeros(len(mu))])
    elif z_dim == 2:  # z itself
        placed = mu
    else:  # the first two principal components, which plot_latent_space computes in float64
        placed = plots._project_2d(mu.astype(np.float64))[0]
    assert [scatter.get_label() for scatter in axes.collections] == [f"digit {i}" for i in range(10)]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [f"digit {i}" for i in range(10)]
    for digit, scatter in enumerate(axes.collections):
        np.testing.assert_allclose(scatter.get_offsets(), placed[labels == digit], rtol=1e-6)
    assert len({tuple(scatter.get_facecolor()[0]) for scatter in axes.collections}) == 10  # a colour per class
    _assert_points_drawn(path, axes, placed)


def test_latent_space_without_labels(tmp_path, figures):
    path = tmp_path / "latent.png"
    mu = np.random.default_rng(0).normal(size=(50, 3))
    plots.plot_latent_space(mu, None, None, path)
    assert _png_size(path) == (700, 800)
    (axes,) = figures[-1].axes
    (scatter,) = axes.collections
    np.testing.assert_allclose(scatter.get_offsets(), plots._project_2d(mu)[0])
    assert axes.get_legend() is None
    _assert_points_drawn(path, axes, plots._project_2d(mu)[0])


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
def test_manifold_and_samples_pngs(tmp_path, channels, figures):
    decoded = _images(15 * 15, channels)
    samples = _images(64, channels, seed=1)
    plots.plot_manifold(decoded.reshape(15, 15, 28, 28, channels), tmp_path / "manifold.png")
    plots.plot_samples(samples, tmp_path / "samples.png")

    assert _png_size(tmp_path / "manifold.png") == (750, 700)
    assert _png_size(tmp_path / "samples.png") == (750, 700)
    manifold_figure, samples_figure = figures
    _assert_shows(tmp_path / "manifold.png", manifold_figure, plots.image_grid(decoded, 15, 15, gap=1))
    _assert_shows(tmp_path / "samples.png", samples_figure, plots.image_grid(samples, 8, 8, gap=2))  # 64 images: 8 x 8


def test_manifold_rejects_a_flat_list_of_images(tmp_path):
    with pytest.raises(ValueError, match=r"\(rows, cols, H, W, C\)"):
        plots.plot_manifold(np.zeros((9, 28)), tmp_path / "m.png")


def _pixels_of_colour(path: Path, axes, colour) -> int:
    """How many PNG pixels inside ``axes``, outside its legend, have ``colour`` (the core of a line or marker)."""
    pixels = _pixels(path)
    inside = np.zeros(pixels.shape[:2], dtype=bool)
    for box, value in ((axes.get_window_extent(), True), (axes.get_legend().get_window_extent(), False)):
        inside[int(len(pixels) - box.y1) - 1 : int(len(pixels) - box.y0) + 1, int(box.x0) - 1 : int(box.x1) + 1] = value
    # Within 12/255 per channel: a line's or marker's solid middle, not its anti-aliased edge blended with white.
    near = np.all(np.abs(pixels - np.array(to_rgb(colour))) <= 12 / 255, axis=-1)
    return int(np.sum(near & inside))


def test_loss_curves_png_with_gaps_in_the_history(tmp_path, figures):
    history = [
        {
            "epoch": e,
            "loss": 60.0 / e,
            "reconstruction_loss": 0.05 / e,
            "kl_loss": 3.0 + e,
            "val_loss": 62.0 / e,
            "val_reconstruction_loss": 0.052 / e,
            "val_kl_loss": None if e == 2 else 3.1 + e,
        }
        for e in (1, 2, 3)
    ]
    path = tmp_path / "loss_curves.png"

    plots.plot_loss_curves(history, path)

    assert _png_size(path) == (400, 1300)
    panels = figures[-1].axes
    assert [axes.get_title() for axes in panels] == ["Loss", "Reconstruction term", "KL term (nats)"]
    for axes, key in zip(panels, ("loss", "reconstruction_loss", "kl_loss"), strict=True):
        train, validation = axes.lines
        assert (train.get_label(), validation.get_label()) == ("train", "validation")
        for line, prefix in ((train, ""), (validation, "val_")):
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
            expected = [np.nan if row[prefix + key] is None else row[prefix + key] for row in history]
            np.testing.assert_array_equal(line.get_ydata(), expected)  # the missing epoch stays NaN
        # A line over three epochs colours hundreds of pixels in its colour (about 400 dashed, 600 solid) ...
        assert _pixels_of_colour(path, axes, train.get_color()) > 200, key
        if key != "kl_loss":
            assert _pixels_of_colour(path, axes, validation.get_color()) > 200, key
    # ... while the validation KL term, missing at epoch 2, is two markers with no line across the gap (about 50).
    assert 0 < _pixels_of_colour(path, panels[2], panels[2].lines[1].get_color()) < 100


@pytest.mark.parametrize(
    ("temperature", "prior", "title"),
    [
        (1.0, "normal", "4 images decoded from z ~ N(0, I)"),
        (0.5, "normal", "4 images decoded from z ~ N(0, 0.5^2 I)"),
        (1.0, "vamp", "4 images decoded from z ~ the VampPrior"),
        (0.5, "vamp", "4 images decoded from z ~ the VampPrior at temperature 0.5"),
    ],
)
def test_the_samples_title_names_the_prior_they_came_from(tmp_path, figures, temperature, prior, title):
    plots.plot_samples(_images(4, 1), tmp_path / "samples.png", temperature=temperature, prior=prior)
    assert figures[0].get_suptitle() == title
