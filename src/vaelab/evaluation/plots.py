"""The evaluate stage's pictures as PNG files: reconstructions, latent space, manifold, samples, loss curves.

Images are float arrays in [0, 1] shaped ``(N, H, W, C)`` with C = 1 (drawn in grayscale) or 3 (RGB).
Every figure has a fixed size in inches at :data:`DPI`, so a PNG's pixel size depends only on the
kind of plot (and, for reconstructions, the number of images), and is written via ``atomic_path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and the same output everywhere

import matplotlib.pyplot as plt  # after the backend choice above
import numpy as np
from matplotlib.ticker import MaxNLocator

from vaelab.files import atomic_path

DPI = 100
# Figure sizes in inches; at DPI 100 they are the PNG's size in hundreds of pixels.
RECONSTRUCTION_TILE = 1.0  # per image column, above its reconstruction
RECONSTRUCTION_HEIGHT = 2.5
LATENT_SIZE = (8.0, 7.0)
GRID_SIZE = (7.0, 7.5)  # manifold and samples: square image plus a title line
LOSS_SIZE = (13.0, 4.0)
ARITHMETIC_TILE = 1.2  # inches per column of the latent-arithmetic picture
INTERPOLATION_TILE = 1.0  # inches per image of an interpolation
# Multiples of the latent step from one class to the other added to each image (0 = its plain reconstruction).
ARITHMETIC_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)


def image_grid(images: np.ndarray, rows: int, cols: int, gap: int = 0) -> np.ndarray:
    """Tile ``(N, H, W, C)`` (or ``(N, H, W)``) images row by row into one image of ``rows`` x ``cols`` tiles.

    The result is ``(rows*H + (rows-1)*gap, cols*W + (cols-1)*gap, C)``, with white lines ``gap`` pixels
    wide between tiles. Tiles beyond N stay black; images beyond ``rows * cols`` are left out.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C); received shape {images.shape}")
    count, height, width, channels = images.shape
    grid = np.ones((rows * (height + gap) - gap, cols * (width + gap) - gap, channels), dtype="float32")
    for index in range(rows * cols):
        top, left = (index // cols) * (height + gap), (index % cols) * (width + gap)
        grid[top : top + height, left : left + width] = images[index] if index < count else 0.0
    return grid


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: Path | str) -> None:
    """Originals in the top row, each one's reconstruction below it."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} must have the same shape")
    count = len(originals)
    figure = plt.figure(figsize=(max(4, count) * RECONSTRUCTION_TILE, RECONSTRUCTION_HEIGHT), dpi=DPI)
    axes = figure.add_axes((0.02, 0.02, 0.96, 0.78))
    _show(axes, image_grid(np.concatenate([originals, reconstructions]), 2, count, gap=2))
    figure.suptitle("Test images (top) and their reconstructions from the posterior mean (bottom)")
    _save(figure, path)


def plot_latent_space(mu: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] | None, path: Path | str) -> None:
    """Posterior means of test images, colored by class: z itself for z_dim 2, else its first two principal components."""
    points, axis_names, title = _project_2d(np.asarray(mu, dtype="float64"))
    figure, axes = plt.subplots(figsize=LATENT_SIZE, dpi=DPI, layout="constrained")
    if labels is None:
        axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        colors = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, label in enumerate(classes):
            chosen = labels == label
            name = class_names[int(label)] if class_names is not None and 0 <= int(label) < len(class_names) else str(label)
            axes.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.6, color=colors(i % colors.N), label=name)
        axes.legend(title="class", markerscale=3, loc="best", fontsize="small")
    axes.set_xlabel(axis_names[0])
    axes.set_ylabel(axis_names[1])
    axes.set_title(f"{title} ({len(points)} test images)")
    _save(figure, path)


def plot_manifold(images_grid: np.ndarray, path: Path | str) -> None:
    """A ``(rows, cols, H, W, C)`` grid of images decoded from a regular grid of 2-D latent points."""
    images_grid = np.asarray(images_grid)
    if images_grid.ndim == 4:
        images_grid = images_grid[..., np.newaxis]
    if images_grid.ndim != 5:
        raise ValueError(f"images_grid must be (rows, cols, H, W, C); received shape {images_grid.shape}")
    rows, cols = images_grid.shape[:2]
    flat = images_grid.reshape(rows * cols, *images_grid.shape[2:])
    _grid_figure(image_grid(flat, rows, cols, gap=1), "Decoder output over the latent plane (z[0] across, z[1] up)", path)


def plot_samples(images: np.ndarray, path: Path | str, temperature: float = 1.0, prior: str = "normal") -> None:
    """Images decoded from z ~ N(0, temperature^2 I) (or the VampPrior, ``prior`` "vamp"), in the smallest square grid
    that holds them."""
    images = np.asarray(images)
    side = int(np.ceil(np.sqrt(len(images))))
    if prior == "vamp":
        prior = "the VampPrior" if temperature == 1.0 else f"the VampPrior at temperature {temperature:g}"
    else:
        prior = "N(0, I)" if temperature == 1.0 else f"N(0, {temperature:g}^2 I)"
    _grid_figure(image_grid(images, side, side, gap=2), f"{len(images)} images decoded from z ~ {prior}", path)


def plot_interpolation(images: np.ndarray, title: str, path: Path | str) -> None:
    """One row of images: a path through the latent space, its two ends first and last."""
    images = np.asarray(images)
    figure = plt.figure(figsize=(max(4, len(images)) * INTERPOLATION_TILE, INTERPOLATION_TILE + 0.6), dpi=DPI)
    axes = figure.add_axes((0.01, 0.02, 0.98, INTERPOLATION_TILE / (INTERPOLATION_TILE + 0.6)))
    _show(axes, image_grid(images, 1, len(images), gap=2))
    figure.suptitle(title, fontsize="small")
    _save(figure, path)


def plot_latent_arithmetic(
    result: tuple[np.ndarray, np.ndarray] | None, strengths: Sequence[float], class_names: Sequence[str], path: Path | str
) -> None:
    """Each row: an image of class 0, then decodings of its latent mean plus ``s`` x (class-1 mean - class-0 mean).

    ``result`` is what :func:`vaelab.evaluation.metrics.latent_arithmetic` returns; None (a class had no test image)
    writes nothing.
    """
    if result is None:
        return
    originals, shifted = (np.asarray(a) for a in result)
    rows, cols = shifted.shape[:2]
    tiles = np.concatenate([originals[:, np.newaxis], shifted], axis=1)  # (rows, 1 + cols, H, W, C)
    grid = image_grid(tiles.reshape(rows * (cols + 1), *tiles.shape[2:]), rows, cols + 1, gap=2)
    figure = plt.figure(figsize=((cols + 1) * ARITHMETIC_TILE, rows * ARITHMETIC_TILE + 0.9), dpi=DPI)
    axes = figure.add_axes((0.02, 0.02, 0.96, 1 - 0.9 / (rows * ARITHMETIC_TILE + 0.9)))
    _show(axes, grid)
    first, second = class_names[0], class_names[1]
    labels = ", ".join(f"{s:g}" for s in strengths)
    figure.suptitle(f"{first!r} test images, then z + s * (mean z of {second!r} - mean z of {first!r}), s = {labels}", fontsize="small")
    _save(figure, path)


def plot_loss_curves(history: Sequence[Mapping[str, float | None]], path: Path | str) -> None:
    """Training and validation curves per epoch: the total loss, the reconstruction term and the KL term."""
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    figure, panels = plt.subplots(1, 3, figsize=LOSS_SIZE, dpi=DPI, layout="constrained")
    curves = (("loss", "Loss"), ("reconstruction_loss", "Reconstruction term"), ("kl_loss", "KL term (nats)"))
    for axes, (key, title) in zip(panels, curves, strict=True):
        for prefix, label, style in (("", "train", "-o"), ("val_", "validation", "--s")):
            values = [_nan_if_none(row.get(prefix + key)) for row in history]
            if not all(np.isnan(values)):
                axes.plot(epochs, values, style, markersize=3, label=label)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    _save(figure, path)


def _project_2d(mu: np.ndarray) -> tuple[np.ndarray, tuple[str, str], str]:
    z_dim = mu.shape[1]
    if z_dim == 1:
        return np.column_stack([mu[:, 0], np.zeros(len(mu))]), ("z[0]", ""), "Latent space (z_dim 1)"
    if z_dim == 2:
        return mu, ("z[0]", "z[1]"), "Latent space"
    centred = mu - mu.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / max(float(np.sum(singular**2)), np.finfo(float).tiny)
    names = (f"PC1 ({variance[0]:.0%} of variance)", f"PC2 ({variance[1]:.0%} of variance)")
    return centred @ components[:2].T, names, f"Latent space (z_dim {z_dim}), PCA projection"


def _grid_figure(grid: np.ndarray, title: str, path: Path | str) -> None:
    figure = plt.figure(figsize=GRID_SIZE, dpi=DPI)
    axes = figure.add_axes((0.02, 0.02, 0.96, 0.88))
    _show(axes, grid)
    figure.suptitle(title)
    _save(figure, path)


def _show(axes, image: np.ndarray) -> None:
    image = np.clip(image, 0.0, 1.0)
    if image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.imshow(image, interpolation="nearest")
    axes.set_axis_off()


def _save(figure, path: Path | str) -> None:
    try:
        with atomic_path(path, suffix=".png") as tmp:
            # format given explicitly: the temporary name's suffix must not decide it.
            figure.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(figure)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)
