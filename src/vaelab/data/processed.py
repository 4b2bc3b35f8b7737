"""The processed-data folder that `preprocess` writes and training and evaluation read.

Format of ``<paths.processed>/``:

- ``x_train-00000.npy``, ... (likewise ``x_val-*``, ``x_test-*``): uint8 image shards ``(n, H, W, C)``, see
  :mod:`vaelab.data.shards`. Pixels become float32 in [0, 1] (``/ 255``) only when a batch is read, so a
  split takes a quarter of its float32 size on disk and, while training, only a few batches in memory.
- ``y_train.npy``, ``y_val.npy``, ``y_test.npy``: uint8 ``(N,)`` class indices into ``class_names``; all zero
  when ``class_names`` is empty (an image folder without class subfolders has no labels).
- ``meta.json``, written last: dataset, image_shape ``[H, W, C]``, class_names, counts per split, the shard
  files of each split, and the settings that made the split (seed, val_fraction, caps, ...).
- ``stats.json``: per split, ``count``, ``pixel_mean`` and ``pixel_std`` rounded to 6 digits.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.data.shards import ShardedImages, ShardWriter, open_shard, pixel_stats
from vaelab.errors import DataError, InputMismatchError
from vaelab.files import atomic_path, ensure_dir, read_json, write_json

SPLITS = ("train", "val", "test")
META = "meta.json"
STATS = "stats.json"
_RERUN = "run `dvc repro preprocess` (or `vaelab preprocess`)"


@dataclass(frozen=True)
class Splits:
    """Images indexable like float32 ``(N, H, W, C)`` arrays in [0, 1] (shards on disk, or arrays in tests)."""

    x_train: ShardedImages | np.ndarray
    y_train: np.ndarray  # (N,) uint8
    x_val: ShardedImages | np.ndarray
    y_val: np.ndarray
    x_test: ShardedImages | np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]  # empty: the images have no labels

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)


def split_sizes(splits: Splits) -> dict[str, int]:
    """Images per split: ``{"train": n, "val": n, "test": n}``."""
    return {split: len(getattr(splits, f"x_{split}")) for split in SPLITS}


class ProcessedWriter:
    """Streams images into the processed folder split by split; :meth:`finish` writes labels, meta and stats.

    Memory stays at one shard per split being written, however many images pass through.
    """

    def __init__(self, out_dir: Path | str, image_shape: Sequence[int]):
        self.out_dir = ensure_dir(out_dir)
        self.image_shape = tuple(int(n) for n in image_shape)
        # An old meta.json must not vouch for a half-rewritten folder if this run is interrupted.
        (self.out_dir / META).unlink(missing_ok=True)
        self._writers = {split: ShardWriter(self.out_dir, f"x_{split}", self.image_shape) for split in SPLITS}
        self._labels: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        self._files: dict[str, list[str]] = {}

    def count(self, split: str) -> int:
        return self._writers[split].count

    def add(self, split: str, images: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.uint8).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self._writers[split].append(images)
        self._labels[split].append(labels)

    def end_split(self, split: str) -> None:
        """Write the split's last shard now rather than at :meth:`finish` (frees its buffer)."""
        if split not in self._files:
            self._files[split] = self._writers[split].close()

    def finish(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Write the labels, ``stats.json`` and then ``meta.json``; remove shards of earlier runs; return the stats."""
        for split in SPLITS:
            self.end_split(split)
        stats = {}
        for split in SPLITS:
            labels = np.concatenate(self._labels[split]) if self._labels[split] else np.zeros(0, np.uint8)
            _save_npy(self.out_dir / f"y_{split}.npy", labels)
            writer = self._writers[split]
            pixels = writer.count * int(np.prod(self.image_shape))
            stats[split] = pixel_stats(writer.count, pixels, writer.pixel_sum, writer.pixel_square_sum)
        current = {name for files in self._files.values() for name in files}
        for old in self.out_dir.glob("x_*.npy"):  # shards (or whole-split files) of an earlier, larger run
            if old.name not in current:
                old.unlink()
        full_meta = {
            **meta,
            "image_shape": list(self.image_shape),
            "counts": {split: self._writers[split].count for split in SPLITS},
            "shards": {split: self._files[split] for split in SPLITS},
        }
        write_json(self.out_dir / STATS, stats)
        write_json(self.out_dir / META, full_meta)
        return stats


def write_splits(out_dir: Path | str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write six in-memory arrays (images uint8, or float in [0, 1] rounded to 1/255 steps); return the stats."""
    image_shape = np.asarray(arrays["x_train"]).shape[1:]
    if len(image_shape) == 2:
        image_shape = (*image_shape, 1)
    writer = ProcessedWriter(out_dir, image_shape)
    for split in SPLITS:
        writer.add(split, arrays[f"x_{split}"], arrays[f"y_{split}"])
        writer.end_split(split)
    return writer.finish(meta)


def load_splits(out_dir: Path | str) -> Splits:
    """Open the processed splits: shard headers and labels are read now, images when they are indexed."""
    out_dir = Path(out_dir)
    meta_path = out_dir / META
    meta = read_meta(out_dir)
    try:
        height, width, channels = (int(n) for n in meta["image_shape"])
        image_shape = (height, width, channels)
        class_names = tuple(str(name) for name in meta["class_names"])
        shard_files = {split: [str(name) for name in meta["shards"][split]] for split in SPLITS}
    except KeyError as err:
        raise DataError(f"{meta_path}: no {err} entry (written by an older vaelab?); {_RERUN}") from None
    except (ValueError, TypeError) as err:
        raise DataError(f"{meta_path}: unreadable ({type(err).__name__}: {err}); {_RERUN}") from None
    fields: dict[str, Any] = {}
    for split in SPLITS:
        images = ShardedImages([open_shard(out_dir / name, image_shape, _RERUN) for name in shard_files[split]], image_shape)
        labels = _load_labels(out_dir / f"y_{split}.npy")
        if labels.shape != (len(images),):
            raise DataError(f"{out_dir}: {len(images)} images in x_{split} shards but y_{split} has shape {labels.shape}; {_RERUN}")
        fields[f"x_{split}"], fields[f"y_{split}"] = images, labels
    return Splits(**fields, image_shape=image_shape, class_names=class_names)


def read_meta(out_dir: Path | str) -> dict[str, Any]:
    """The folder's meta.json; DataError naming the file if it is missing or unreadable."""
    return read_json(Path(out_dir) / META, _RERUN)


def check_made_from(out_dir: Path | str, settings: Mapping[str, tuple[str, Any]]) -> None:
    """Refuse the folder if meta.json records other settings than ``settings`` (meta key -> (param, value)).

    A stage checks this first, so it never trains or reports on data under params that did not make it.
    A setting meta.json does not record is not compared (hand-made test data records few), except binarize,
    which is "none" when unrecorded.
    """
    # Data made before binarization existed records no binarize: it holds grey levels, which no run that
    # reports binarized likelihoods may read.
    meta = {"binarize": "none", **read_meta(out_dir)}
    differing = {name: wanted for name, wanted in settings.items() if name in meta and meta[name] != wanted[1]}
    if differing:
        held = ", ".join(f"{name}={meta[name]!r}" for name in differing)
        wanted = ", ".join(f"{param}={value!r}" for param, value in differing.values())
        raise InputMismatchError(
            f"{Path(out_dir) / META}: holds data made with {held} but params.yaml says {wanted}; {_RERUN} to remake it from these params"
        )


def _load_labels(path: Path) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {_RERUN}") from None
    except ValueError as err:
        raise DataError(f"{path}: not a valid .npy file ({err}); {_RERUN}") from None
    if labels.dtype != np.uint8:
        raise DataError(f"{path}: labels have dtype {labels.dtype}; expected uint8; {_RERUN}")
    return labels


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
