"""Turn the raw uint8 arrays into the float32 train/validation/test splits the model trains on.

The validation set is a seeded random share of the raw training set. The caps ``data.max_train``
and ``data.max_test`` shrink the splits for quick runs:

- train keeps its first ``max_train`` images in the shuffled order, so a cap is a random subset;
- validation shrinks in proportion, keeping its ratio to train:
  ``round(n_val * max_train / n_train)``, at least 1;
- test keeps its first ``max_test`` images in the original order.

The same raw data, seed and settings always give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaelab.data.processed import write_splits
from vaelab.data.raw import MANIFEST, load_raw, read_manifest
from vaelab.errors import DataError

if TYPE_CHECKING:
    from vaelab.config import DataSection


def preprocess(raw_dataset_dir: Path | str, out_dir: Path | str, data: DataSection, seed: int) -> dict[str, Any]:
    """Write the processed splits into ``out_dir`` (format in :mod:`vaelab.data.processed`); return their stats."""
    raw_dataset_dir = Path(raw_dataset_dir)
    manifest = read_manifest(raw_dataset_dir)
    if manifest["dataset"] != data.dataset:
        raise DataError(
            f"{raw_dataset_dir / MANIFEST}: holds {manifest['dataset']!r} but data.dataset is {data.dataset!r}; "
            "run `dvc repro download`"
        )
    raw = load_raw(raw_dataset_dir)
    train_idx, val_idx = split_indices(len(raw["x_train"]), data.val_fraction, seed, data.max_train)
    n_test = len(raw["x_test"]) if data.max_test is None else min(data.max_test, len(raw["x_test"]))

    arrays = {
        "x_train": to_unit_float(raw["x_train"][train_idx]),
        "y_train": raw["y_train"][train_idx],
        "x_val": to_unit_float(raw["x_train"][val_idx]),
        "y_val": raw["y_train"][val_idx],
        "x_test": to_unit_float(raw["x_test"][:n_test]),
        "y_test": raw["y_test"][:n_test],
    }
    meta = {
        "dataset": data.dataset,
        "source": manifest.get("source"),
        "image_shape": list(arrays["x_train"].shape[1:]),
        "class_names": list(manifest["class_names"]),
        "counts": {split: len(arrays[f"y_{split}"]) for split in ("train", "val", "test")},
        "seed": seed,
        "val_fraction": data.val_fraction,
        "max_train": data.max_train,
        "max_test": data.max_test,
    }
    return write_splits(out_dir, arrays, meta)


def split_indices(n: int, val_fraction: float, seed: int, max_train: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation images, drawn from a seeded permutation of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction)
    if not 1 <= n_val <= n - 1:
        raise DataError(
            f"data.val_fraction={val_fraction} leaves {n_val} of {n} training images for validation; "
            "choose a fraction that keeps at least one image in each split"
        )
    val, train = order[:n_val], order[n_val:]
    if max_train is not None and max_train < len(train):
        val = val[: max(1, round(n_val * max_train / len(train)))]
        train = train[:max_train]
    return train, val


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1] with a channel axis: (N, H, W) -> (N, H, W, 1)."""
    scaled = x.astype(np.float32) / np.float32(255)
    return scaled[..., np.newaxis] if scaled.ndim == 3 else scaled
