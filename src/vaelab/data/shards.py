"""uint8 image shards: written one shard at a time, read back a few rows at a time.

A split's images live in ``.npy`` files (``<stem>-00000.npy``, ...) of at most
:func:`images_per_shard` images each, uint8 ``(n, H, W, C)``: about :data:`SHARD_BYTES` per file,
a quarter of the size of float32 and seekable, because a ``.npy`` file is a short header followed by
the rows in order.

Reading uses positional reads into a fresh buffer rather than memory maps: a mapped page that was
touched stays in the process's resident memory until the map is closed, so mapping a 10 GB split and
visiting every row once would make the process look 10 GB large. With plain reads a process holds only
the rows it asked for; the operating system's page cache still keeps hot files in memory for free.

:func:`image_batches` turns shards (or an in-memory array) into a ``tf.data`` pipeline that shuffles
indices, not images, reads each batch in parallel and converts it to float32 in [0, 1] on the fly.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vaelab.errors import DataError
from vaelab.files import atomic_path

SHARD_BYTES = 16 * 2**20
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def images_per_shard(image_shape: Sequence[int]) -> int:
    return max(1, SHARD_BYTES // math.prod(image_shape))


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]: the one conversion training, evaluation and plots all use."""
    return np.asarray(x).astype(np.float32) / np.float32(255)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images as uint8 ``(N, H, W, C)``: uint8 passes through, floats in [0, 1] are rounded to 1/255 steps."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        if x.dtype.kind != "f":
            raise ValueError(f"images must be uint8 or float in [0, 1]; received dtype {x.dtype}")
        x = np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    return x[..., np.newaxis] if x.ndim == 3 else x


class ShardWriter:
    """Appends uint8 images to numbered ``.npy`` shards in ``folder``; each shard is written whole, atomically.

    Also keeps exact integer sums of the pixels and of their squares, for the split's mean and std.
    """

    def __init__(self, folder: Path, stem: str, image_shape: Sequence[int], per_shard: int | None = None):
        self.folder = Path(folder)
        self.stem = stem
        self.image_shape = tuple(int(n) for n in image_shape)
        self.per_shard = per_shard or images_per_shard(self.image_shape)
        self.files: list[str] = []
        self.count = 0  # images appended so far, written or still buffered
        self.pixel_sum = 0
        self.pixel_square_sum = 0
        self._buffer = np.empty((self.per_shard, *self.image_shape), dtype=np.uint8)
        self._filled = 0

    def append(self, images: np.ndarray) -> None:
        images = to_uint8(images)
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"images of shape {images.shape[1:]} do not fit shards of {self.image_shape}")
        self.count += len(images)
        start = 0
        while start < len(images):
            take = min(self.per_shard - self._filled, len(images) - start)
            self._buffer[self._filled : self._filled + take] = images[start : start + take]
            self._filled += take
            start += take
            if self._filled == self.per_shard:
                self._flush()

    def close(self) -> list[str]:
        """Write the last, partly filled shard; return the shard file names in order."""
        if self._filled:
            self._flush()
        self._buffer = np.empty((0, *self.image_shape), dtype=np.uint8)
        return list(self.files)

    def _flush(self) -> None:
        rows = self._buffer[: self._filled]
        name = f"{self.stem}-{len(self.files):05d}.npy"
        with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, rows, allow_pickle=False)
        counts = _value_counts(rows)
        levels = np.arange(256, dtype=np.int64)
        self.pixel_sum += int(counts @ levels)
        self.pixel_square_sum += int(counts @ (levels * levels))
        self.files.append(name)
        self._filled = 0


def _value_counts(rows: np.ndarray, block: int = 2**22) -> np.ndarray:
    """How often each value 0..255 occurs, counted a block at a time (bincount makes an int64 copy of its input)."""
    flat = rows.reshape(-1)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(flat), block):
        counts += np.bincount(flat[start : start + block], minlength=256)
    return counts


def pixel_stats(count: int, pixels: int, pixel_sum: int, pixel_square_sum: int) -> dict[str, float | int]:
    """``count``, and mean and std of the pixels as floats in [0, 1], rounded to 6 digits, from exact sums."""
    if pixels == 0:
        return {"count": count, "pixel_mean": 0.0, "pixel_std": 0.0}
    mean = pixel_sum / pixels / 255
    variance = max(pixel_square_sum / pixels / 255**2 - mean * mean, 0.0)
    return {"count": count, "pixel_mean": round(mean, 6), "pixel_std": round(math.sqrt(variance), 6)}


@dataclass(frozen=True)
class Shard:
    path: Path
    count: int
    offset: int  # where the rows start, after the .npy header


def open_shard(path: Path, image_shape: Sequence[int], rerun: str) -> Shard:
    """Read and check one shard's header (uint8, C order, ``(n, *image_shape)``, complete file)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = _HEADER_READERS.get(version)
            if reader is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran_order, dtype = reader(handle)
            offset = handle.tell()
            size = handle.seek(0, 2)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {rerun}") from None
    except ValueError as err:
        raise DataError(f"{path}: not a valid .npy file ({err}); {rerun}") from None
    if dtype != np.uint8 or fortran_order or tuple(shape[1:]) != tuple(image_shape):
        raise DataError(f"{path}: holds {dtype} {shape}; expected uint8 (n, {', '.join(map(str, image_shape))}); {rerun}")
    expected = offset + math.prod(shape)
    if size != expected:
        raise DataError(f"{path}: {size} bytes, the header promises {expected}; the file is truncated; {rerun}")
    return Shard(Path(path), int(shape[0]), offset)


class ShardedImages:
    """A split's images in uint8 shards, indexed like a read-only float32 array ``(N, H, W, C)`` in [0, 1].

    ``x[i]``, ``x[a:b]``, ``x[[i, j]]`` and ``x[rows, ...rest]`` read only those rows;
    ``np.asarray(x)`` reads them all, so keep it for small splits. :meth:`read_uint8` gives the stored bytes,
    :meth:`head` a shorter view that reads nothing.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, shards: Sequence[Shard], image_shape: Sequence[int]):
        self.shards = tuple(shards)
        self.image_shape = tuple(int(n) for n in image_shape)
        self._starts = np.cumsum([0] + [s.count for s in self.shards])
        self._row_bytes = math.prod(self.image_shape)

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.image_shape)

    def __repr__(self) -> str:
        return f"ShardedImages(shape={self.shape}, shards={len(self.shards)})"

    def head(self, count: int) -> ShardedImages:
        """The first ``count`` images (all if fewer) over the same files; unlike ``x[:count]``, nothing is read."""
        if count < 0:
            raise ValueError(f"count must be at least 0; received {count}")
        kept, remaining = [], min(count, len(self))
        for shard in self.shards:
            if remaining == 0:
                break
            kept.append(shard if shard.count <= remaining else replace(shard, count=remaining))
            remaining -= kept[-1].count
        return ShardedImages(kept, self.image_shape)

    def __getitem__(self, key):
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if rows is Ellipsis:
            rows, rest = slice(None), (Ellipsis, *rest)
        if isinstance(rows, (int, np.integer)):
            image = to_unit_float(self.read_uint8([self._check_row(int(rows))]))[0]
            return image[rest] if rest else image
        images = to_unit_float(self.read_uint8(rows))
        return images[(slice(None), *rest)] if rest else images

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype)

    def read_uint8(self, rows) -> np.ndarray:
        """The stored images at ``rows`` (a slice or a sequence of indices), uint8 ``(len(rows), H, W, C)``."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step == 1:
                return self._read_sorted(np.arange(start, max(start, stop)))
            indices = np.arange(start, stop, step)
        else:
            indices = np.asarray(rows)
            if indices.size == 0:
                indices = np.zeros(0, dtype=np.int64)
            elif indices.dtype.kind not in "iu" or indices.ndim != 1:
                raise IndexError(f"rows must be a slice or a 1-D sequence of integers; received {rows!r:.80}")
            indices = indices.astype(np.int64)
            if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
                raise IndexError(f"rows {indices.min()}..{indices.max()} are out of range for {len(self)} images")
            indices = np.where(indices < 0, indices + len(self), indices)
        if len(indices) and np.all(np.diff(indices) > 0):
            return self._read_sorted(indices)
        unique, inverse = np.unique(indices, return_inverse=True)
        return self._read_sorted(unique)[inverse]

    def _check_row(self, row: int) -> int:
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} is out of range for {len(self)} images")
        return row % len(self) if len(self) else row

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        """Rows at strictly increasing ``indices``: one read per run of consecutive rows within a shard."""
        out = np.empty((len(indices), *self.image_shape), dtype=np.uint8)
        if not len(indices):
            return out
        shard_of = np.searchsorted(self._starts, indices, side="right") - 1
        # A run ends where the next index skips a row or falls into another shard.
        breaks = np.flatnonzero((np.diff(indices) != 1) | (np.diff(shard_of) != 0)) + 1
        bounds = [0, *breaks.tolist(), len(indices)]
        handles: dict[int, io.FileIO] = {}
        try:
            for begin, end in itertools.pairwise(bounds):
                number = int(shard_of[begin])
                shard = self.shards[number]
                if number not in handles:
                    handles[number] = open(shard.path, "rb", buffering=0)  # noqa: SIM115 - closed below
                handle = handles[number]
                local = int(indices[begin] - self._starts[number])
                handle.seek(shard.offset + local * self._row_bytes)
                target = out[begin:end].data.cast("B")  # .data: numpy's stubs give ndarray no __buffer__ before 3.12
                if handle.readinto(target) != len(target):
                    raise DataError(f"{shard.path}: shorter than its header says; re-run the preprocess stage")
        except FileNotFoundError as err:
            raise DataError(f"{err.filename}: not found; re-run the preprocess stage") from None
        finally:
            for handle in handles.values():
                handle.close()
        return out


def image_batches(
    x,
    batch_size: int,
    *,
    seed: int | None = None,
    repeat: bool = False,
    skip: int = 0,
    labels=None,
    binarize_seed: int | None = None,
):
    """A ``tf.data.Dataset`` of float32 image batches ``(batch, H, W, C)`` in [0, 1] from ``x``.

    ``x`` is :class:`ShardedImages` (read as uint8, converted per batch) or an in-memory float32 array.
    With ``seed``, each pass over the data is a fresh seeded shuffle; with ``repeat`` the passes follow one
    another without end, and no batch straddles two passes. ``skip`` drops that many batches at the start,
    without reading them: a resumed training sees exactly the batches an uninterrupted one would.
    With ``labels`` (an array of ``len(x)``), each element is an ``(images, labels)`` pair instead.
    With ``binarize_seed``, every batch is binarized afresh (dynamic binarization, see
    :mod:`vaelab.data.binarize`) with bits keyed by that seed and the batch's step number, counted from
    the first batch of the first pass: skipped batches keep their numbers, so a resumed run draws the same bits.
    """
    import tensorflow as tf

    count, image_shape = len(x), tuple(int(n) for n in x.shape[1:])
    if isinstance(x, ShardedImages):
        read, dtype = x.read_uint8, tf.uint8
    else:
        array = np.asarray(x, dtype=np.float32)
        read, dtype = (lambda rows: array[rows]), tf.float32
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != count:
            raise ValueError(f"{count} images but {len(labels)} labels")

    # Only the indices are shuffled, so the shuffle buffer costs 8 bytes per image whatever the image size.
    batches = tf.data.Dataset.range(count)
    if seed is not None:
        batches = batches.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    batches = batches.batch(batch_size)
    if repeat:
        batches = batches.repeat()
    batches = batches.enumerate()  # (step, rows): the step keys a batch's dynamic bits
    if skip:
        batches = batches.skip(skip)

    def load(step, rows):
        images = tf.numpy_function(read, [rows], dtype, stateful=False)
        images.set_shape((None, *image_shape))
        images = tf.cast(images, tf.float32) / 255.0 if dtype == tf.uint8 else images
        if binarize_seed is not None:
            uniforms = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([tf.constant(binarize_seed, tf.int64), step]))
            images = tf.cast(uniforms < images, tf.float32)
        return images if labels is None else (images, tf.gather(labels, rows))

    # deterministic=True: batches are read in parallel but delivered in order, so runs stay reproducible.
    return batches.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
