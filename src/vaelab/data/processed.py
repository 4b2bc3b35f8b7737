"""The processed-data folder that `preprocess` writes and training and evaluation read.

Format of ``<paths.processed>/``:

- ``x_train.npy``, ``x_val.npy``, ``x_test.npy``: float32 ``(N, H, W, C)`` in [0, 1].
- ``y_train.npy``, ``y_val.npy``, ``y_test.npy``: uint8 ``(N,)`` class indices into ``class_names``.
- ``meta.json``: dataset, image_shape ``[H, W, C]``, class_names, counts per split and the settings
  that made the split (seed, val_fraction, max_train, max_test).
- ``stats.json``: per split, ``count``, ``pixel_mean`` and ``pixel_std`` rounded to 6 digits.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.errors import DataError
from vaelab.io import atomic_path, ensure_dir, write_json

SPLITS = ("train", "val", "test")
ARRAY_FILES = tuple(f"{kind}_{split}.npy" for split in SPLITS for kind in ("x", "y"))
META = "meta.json"
STATS = "stats.json"
_RERUN = "run `dvc repro preprocess` (or `vaelab preprocess`)"


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    y_train: np.ndarray  # (N,) uint8
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def write_splits(out_dir: Path | str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write the six arrays, ``meta.json`` and ``stats.json``; return the stats."""
    out_dir = ensure_dir(out_dir)
    for filename in ARRAY_FILES:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(arrays[filename.removesuffix(".npy")]), allow_pickle=False)
        with atomic_path(out_dir / filename) as tmp:
            tmp.write_bytes(buffer.getvalue())
    stats = {split: pixel_stats(arrays[f"x_{split}"]) for split in SPLITS}
    write_json(out_dir / META, dict(meta))
    write_json(out_dir / STATS, stats)
    return stats


def pixel_stats(x: np.ndarray) -> dict[str, Any]:
    # float64 accumulation: float32 sums over millions of pixels drift in the 6th digit.
    return {
        "count": len(x),
        "pixel_mean": round(float(x.mean(dtype=np.float64)), 6) if x.size else 0.0,
        "pixel_std": round(float(x.std(dtype=np.float64)), 6) if x.size else 0.0,
    }


def load_splits(out_dir: Path | str) -> Splits:
    """Open the processed arrays (memory-mapped, read-only) and their metadata."""
    out_dir = Path(out_dir)
    meta_path = out_dir / META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        image_shape = tuple(int(n) for n in meta["image_shape"])
        class_names = tuple(str(name) for name in meta["class_names"])
    except FileNotFoundError:
        raise DataError(f"{meta_path}: not found; {_RERUN}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{meta_path}: unreadable ({type(err).__name__}: {err}); {_RERUN}") from None
    arrays = {}
    for filename in ARRAY_FILES:
        path = out_dir / filename
        try:
            arrays[filename.removesuffix(".npy")] = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: not found; {_RERUN}") from None
        except ValueError as err:
            raise DataError(f"{path}: not a valid .npy file ({err}); {_RERUN}") from None
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[1:] != image_shape or y.shape != (len(x),):
            raise DataError(
                f"{out_dir}: x_{split} {x.shape} / y_{split} {y.shape} disagree with image_shape {list(image_shape)} "
                f"in {META}; {_RERUN}"
            )
    return Splits(**arrays, image_shape=image_shape, class_names=class_names)
