"""`vaelab generate`: pictures and arrays from any trained model, the chapter's explorations on demand.

The model is what ``vaelab.load`` takes (a run id, ``models:/name@alias``, ``models:/name/version``,
``runs:/id/model``, a ``.keras`` file or an MLflow model folder; by default the registry's ``best`` of the
experiment in ``--params``). What it makes, one at a time:

- samples from the prior (the default): ``--n`` images, ``--seed``, ``--temperature``;
- ``--reconstruct``: ``--n`` test images above their reconstructions;
- ``--interpolate A B``: ``--steps`` images between two test images (their indices) or two image files;
- ``--arithmetic``: the attribute vector between the two classes of an image folder, added to class-0 images;
- ``--latent-grid``: the decoder over a grid of the latent plane (z_dim 2 only).

Each ``--out`` file gets the result: ``.png`` a picture, ``.npy`` the images as a float32 array.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vaelab import logs
from vaelab.cli_common import run_guarded
from vaelab.config.load import load_config
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

OUT_SUFFIXES = (".png", ".npy")
DEFAULT_OUT = Path("generated")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vaelab generate",
        description="Sample, reconstruct, interpolate or do latent arithmetic with a trained model, and save the pictures.",
        epilog=(
            "Examples: vaelab generate --n 64 --seed 1 --temperature 0.8 --out grid.png --out grid.npy | "
            "vaelab generate models:/vaelab-mnist/3 --interpolate 0 7 --steps 10 --method spherical | "
            "vaelab generate models/vae.keras --reconstruct --n 12"
        ),
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="run id, models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model, a .keras file or an MLflow model folder "
        "(default: the registry's best model of the experiment in --params)",
    )
    parser.add_argument("--params", default="params.yaml", help="params file: the experiment, data and test images (default: %(default)s)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--reconstruct", action="store_true", help="--n test images and their reconstructions")
    what.add_argument("--interpolate", nargs=2, metavar=("A", "B"), help="morph between two test images (indices) or two image files")
    what.add_argument("--arithmetic", action="store_true", help="the attribute vector from class 0 to class 1 of a two-class image folder")
    what.add_argument("--latent-grid", action="store_true", help="the decoder over an --n x --n grid of the latent plane (z_dim 2)")
    parser.add_argument(
        "--n", type=_count, default=None, help="images to sample (default 64), test images to reconstruct (8) or grid side (15)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior samples (default: %(default)s)")
    parser.add_argument(
        "--temperature", type=_temperature, default=1.0, help="scales the prior's standard deviation (default: %(default)s)"
    )
    parser.add_argument("--steps", type=_steps, default=10, help="images along an interpolation, both ends included (default: %(default)s)")
    parser.add_argument("--method", choices=("linear", "spherical"), default="linear", help="interpolation path (default: %(default)s)")
    parser.add_argument(
        "--out",
        action="append",
        default=[],
        metavar="FILE",
        help="write FILE.png and/or FILE.npy, repeatable (default: generated/<what>.png)",
    )
    args = parser.parse_args(argv)
    logs.configure()
    sys.exit(run_guarded(lambda: run(args)))


def run(args: argparse.Namespace) -> list[Path]:
    """Make what ``args`` asks for and write it to every ``--out``; return the files written."""
    kind = "reconstructions" if args.reconstruct else "interpolation" if args.interpolate else "arithmetic" if args.arithmetic else None
    kind = kind or ("latent_grid" if args.latent_grid else "samples")
    outs = [Path(out) for out in args.out] or [DEFAULT_OUT / f"{kind}.png"]
    for out in outs:
        if out.suffix not in OUT_SUFFIXES:
            raise ConfigError(f"--out {out}: the file name must end in {' or '.join(OUT_SUFFIXES)}")
    config = load_config(args.params) if Path(args.params).is_file() else None

    from vaelab import generator

    # Without a model: the registry's best for the experiment and data of --params (the defaults without one).
    model = generator.load(args.model or generator.best_model_uri(config if config is not None else Config()))
    images, draw = MAKERS[kind](model, args, config)
    for out in outs:
        if out.suffix == ".npy":
            _save_npy(out, images)
        else:
            draw(out)
    source = args.model or model.model_uri
    log.info("wrote %s from %s%s", ", ".join(map(str, outs)), source, f" (run {model.run_id})" if model.run_id else "")
    return outs


Drawing = tuple[np.ndarray, Callable[[Path], None]]


def _samples(model, args, config) -> Drawing:
    from vaelab.evaluation import plots

    images = model.sample(args.n or 64, seed=args.seed, temperature=args.temperature)
    return images, lambda out: plots.plot_samples(images, out, temperature=args.temperature, prior=model.prior)


def _reconstructions(model, args, config) -> Drawing:
    from vaelab.evaluation import plots

    originals = _test_images(config).images[: args.n or 8]
    reconstructions = model.reconstruct(originals)
    return np.stack([originals, reconstructions]), lambda out: plots.plot_reconstructions(originals, reconstructions, out)


def _interpolation(model, args, config) -> Drawing:
    from vaelab.evaluation import plots

    first, second = (_image(model, ref, config) for ref in args.interpolate)
    images = model.interpolate(first, second, steps=args.steps, method=args.method)
    start, end = (_describe(reference) for reference in args.interpolate)
    title = f"{args.method} interpolation from {start} to {end} ({args.steps} steps)"
    return images, lambda out: plots.plot_interpolation(images, title, out)


def _arithmetic(model, args, config) -> Drawing:
    from vaelab.evaluation import plots
    from vaelab.evaluation.metrics import attribute_shift

    test = _test_images(config)
    if len(test.class_names) != 2:
        raise DataError(
            f"--arithmetic needs data with two classes (an image folder with two subfolders); this test split has {len(test.class_names)}: "
            f"{', '.join(test.class_names) or 'none'}"
        )
    shift = attribute_shift(model.encode(test.images)[0], test.labels, plots.ARITHMETIC_STRENGTHS)
    if shift is None:
        raise DataError(f"--arithmetic needs test images of both classes, {test.class_names[0]!r} and {test.class_names[1]!r}")
    chosen, z = shift
    shifted = model.decode(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:2], *model.image_shape)
    originals = test.images[chosen]
    tiles = np.concatenate([originals[:, np.newaxis], shifted], axis=1)
    return tiles, lambda out: plots.plot_latent_arithmetic((originals, shifted), plots.ARITHMETIC_STRENGTHS, test.class_names, out)


def _latent_grid(model, args, config) -> Drawing:
    from vaelab.evaluation import plots
    from vaelab.evaluation.metrics import latent_grid_points

    if model.z_dim != 2:
        raise ConfigError(f"--latent-grid needs a model with z_dim 2; this one has z_dim {model.z_dim}")
    side = args.n or 15
    images = model.decode(latent_grid_points(side)).reshape(side, side, *model.image_shape)
    return images, lambda out: plots.plot_manifold(images, out)


MAKERS = {
    "samples": _samples,
    "reconstructions": _reconstructions,
    "interpolation": _interpolation,
    "arithmetic": _arithmetic,
    "latent_grid": _latent_grid,
}


def _test_images(config):
    import vaelab

    processed = config.paths.processed if config is not None else Path("data/processed")
    return vaelab.test_images(processed)


def _describe(reference: str) -> str:
    return f"test image {reference}" if reference.lstrip("-").isdigit() else Path(reference).name


def _image(model, reference: str, config) -> np.ndarray:
    """A test image by its index, or an image file made to the model's shape."""
    if reference.lstrip("-").isdigit():
        images = _test_images(config).images
        index = int(reference)
        if not 0 <= index < len(images):
            raise DataError(f"--interpolate {reference}: the test split has images 0 to {len(images) - 1}")
        return images[index]
    return read_image_file(Path(reference), model.image_shape)


def read_image_file(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """An image file as ``shape`` (H, W, C) float32 in [0, 1]: centre-cropped square, resized, grey if C is 1."""
    from vaelab.data.images import UnreadableImage, load_image

    if not path.is_file():
        raise DataError(f"{path}: no such image file (or give a test-image index)")
    height, width, channels = shape
    if height != width:
        raise DataError(f"{path}: this model takes {height}x{width} images; only square ones can be made from a file")
    try:
        rgb = load_image(path.read_bytes(), height, "square")  # (H, H, 3) uint8; models take square images
    except UnreadableImage as err:
        raise DataError(f"{path}: cannot read the image ({err})") from None
    pixels = rgb.astype("float32") / 255.0
    if channels == 1:  # ITU-R 601 luma, Pillow's own RGB -> L weights
        pixels = (pixels @ np.array([0.299, 0.587, 0.114], dtype="float32"))[..., np.newaxis]
    return pixels


def _save_npy(path: Path, array: np.ndarray) -> None:
    from vaelab.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array, dtype="float32"))


def _count(text: str, least: int = 1) -> int:
    from vaelab.tracking.generative_model import MAX_IMAGES  # the model's own limit; loads MLflow only when used

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not least <= value <= MAX_IMAGES:
        raise argparse.ArgumentTypeError(f"expected a whole number from {least} to {MAX_IMAGES}, got {text!r}")
    return value


def _steps(text: str) -> int:
    return _count(text, least=2)


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (1 = the prior itself, 0 = its mean), got {text!r}")
    return value
