"""The tiny project the stage tests run in: the real params.yaml shrunk by one set of settings, and bar images.

:data:`TINY` is the one definition of the shrinking, in params.yaml's nested ``{section: {key: value}}``
form. A test that needs another value for a key (more epochs, a larger batch) lays a change over it with
:func:`tiny_settings`, naming just that key, so the difference stands in the test itself.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from data_helpers import bar_images

from vaelab.data.binarize import binarize_raw, stored_splits
from vaelab.data.processed import write_splits
from vaelab.data.shards import to_uint8

# The chapter's layer layout with fewer filters: an epoch over a few hundred 28x28 images takes seconds.
# Evaluation and the sample-judging classifier are cut to match: seconds too, and every metric still computed.
TINY: dict[str, dict] = {
    "train": {"encoder_filters": [8, 8, 8, 8], "decoder_filters": [8, 8, 8, 1], "batch_size": 32, "epochs": 1},
    "evaluate": {"latent_points": 100, "manifold_grid": 4, "batch_size": 64, "nll_samples": 4, "nll_images": 32, "quality_samples": 200},
    "classifier": {"filters": [4, 8], "feature_units": 16, "dropout_rate": 0.0, "epochs": 2, "batch_size": 32, "learning_rate": 0.01},
}
BAR_SPLIT_SIZES = (320, 64, 96)  # train, val, test
BAR_CLASSES = ["top", "middle", "bottom"]  # bar_images' labels 0, 1, 2: where the bar is


def tiny_network(encoder_filters: list[int], decoder_filters: list[int]) -> dict[str, object]:
    """Dotted train overrides for a VAE of these filters, every layer a 3x3 kernel with stride 2.

    The decoder's last entry is the image's channels; the strides of both halves undo each other.
    """
    return {
        "train.encoder_filters": list(encoder_filters),
        "train.encoder_kernels": [3] * len(encoder_filters),
        "train.encoder_strides": [2] * len(encoder_filters),
        "train.decoder_filters": list(decoder_filters),
        "train.decoder_kernels": [3] * len(decoder_filters),
        "train.decoder_strides": [2] * len(decoder_filters),
    }


def tiny_settings(*changes: dict[str, dict]) -> dict[str, dict]:
    """A copy of :data:`TINY` with each change (same nested form, any section) laid over it in turn, key by key."""
    settings = copy.deepcopy(TINY)
    for change in changes:
        for section, values in change.items():
            settings.setdefault(section, {}).update(copy.deepcopy(values))
    return settings


def dotted(settings: dict[str, dict]) -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` as ``{"train.epochs": 3}``: the override form of load_config and with_overrides."""
    return {f"{section}.{key}": value for section, values in settings.items() for key, value in values.items()}


def write_params(folder: Path, project_root: Path, *changes: dict[str, dict]) -> None:
    """``folder/params.yaml``: the project's params.yaml with ``tiny_settings(*changes)`` laid over it."""
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    for section, values in tiny_settings(*changes).items():
        params[section].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def write_bar_splits(processed: Path, sizes: tuple[int, int, int] = BAR_SPLIT_SIZES, binarize: str = "none") -> None:
    """Train, val and test splits of :func:`bar_images` in the processed layout, seeded: the same images every time.

    With ``binarize`` other than none, the splits preprocess would store binarized are binarized the same way
    (:func:`vaelab.data.binarize.binarize_raw`), and meta.json records it.
    """
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = bar_images(n, rng)
    for split in stored_splits(binarize):
        arrays[f"x_{split}"] = binarize_raw(to_uint8(arrays[f"x_{split}"]), "test" if split == "test" else "train")
    meta = {"dataset": "mnist", "image_shape": [28, 28, 1], "class_names": BAR_CLASSES, "binarize": binarize}
    write_splits(processed, arrays, meta)
