"""Turn raw data into the train/validation/test splits the model trains on (uint8 shards, see processed.py).

Registered datasets (MNIST, Fashion-MNIST): the validation set is a seeded random share of the raw
training set, the test set is the raw test set. The caps ``data.max_train`` and ``data.max_test``
shrink the splits for quick runs:

- train keeps its first ``max_train`` images in the shuffled order, so a cap is a random subset;
- validation shrinks in proportion, keeping its ratio to train:
  ``round(n_val * max_train / n_train)``, at least 1;
- test keeps its first ``max_test`` images in the original order.

An image folder (``data.dataset: image_folder``) has no given test set. Of its ``n`` listed files,
``n_test = round(n * data.test_fraction)`` go to test and ``n_val = round((n - n_test) * data.val_fraction)``
to validation, the rest to train (the caps apply as above). The files are shuffled with the seed and
decoded in that order, several at a time: test takes the first ``n_test`` readable images, validation the
next ``n_val``, train the rest. A corrupt or unreadable image is skipped with a warning naming it (and
counted in meta.json), so only train comes out smaller; decoding stops once train is full, so a capped
run reads only the files it needs. Memory stays at one shard and one chunk of images, however large
the folder.

``data.binarize`` (registered datasets only) stores Bernoulli-sampled bits instead of grey levels for
validation and test (``dynamic``) or every split (``fixed``); see :mod:`vaelab.data.binarize`.

The same raw data, seed and settings always give byte-identical files.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaelab.data.binarize import SEED as BINARIZATION_SEED
from vaelab.data.binarize import binarize_raw, stored_splits
from vaelab.data.processed import SPLITS, ProcessedWriter, write_splits
from vaelab.data.raw import MANIFEST, load_raw, read_manifest
from vaelab.data.sources import IMAGE_FOLDER
from vaelab.errors import DataError

if TYPE_CHECKING:
    from vaelab.config.schema import DataSection

log = logging.getLogger(__name__)

DECODE_CHUNK = 64  # images decoded in parallel between two writes


def preprocess(raw_dataset_dir: Path | str, out_dir: Path | str, data: DataSection, seed: int) -> dict[str, Any]:
    """Write the processed splits into ``out_dir`` (format in :mod:`vaelab.data.processed`); return their stats."""
    if data.dataset == IMAGE_FOLDER:
        return preprocess_folder(raw_dataset_dir, out_dir, data, seed)
    raw_dataset_dir = Path(raw_dataset_dir)
    manifest = read_manifest(raw_dataset_dir)
    if manifest["dataset"] != data.dataset:
        raise DataError(
            f"{raw_dataset_dir / MANIFEST}: holds {manifest['dataset']!r} but data.dataset is {data.dataset!r}; run `dvc repro download`"
        )
    raw = load_raw(raw_dataset_dir)
    train_idx, val_idx = split_indices(len(raw["x_train"]), data.val_fraction, seed, data.max_train)
    n_test = len(raw["x_test"]) if data.max_test is None else min(data.max_test, len(raw["x_test"]))

    stored = stored_splits(data.binarize)
    train_source = binarize_raw(raw["x_train"], "train") if stored else raw["x_train"]
    test_source = binarize_raw(raw["x_test"], "test") if stored else raw["x_test"]
    arrays = {
        # Under dynamic binarization the training images stay grey: their bits are drawn as they are read.
        "x_train": (train_source if "train" in stored else raw["x_train"])[train_idx],
        "y_train": raw["y_train"][train_idx],
        "x_val": train_source[val_idx],
        "y_val": raw["y_train"][val_idx],
        "x_test": test_source[:n_test],
        "y_test": raw["y_test"][:n_test],
    }
    meta = _split_meta(data, manifest, seed)
    if stored:
        meta["binarize_seed"] = BINARIZATION_SEED
    return write_splits(out_dir, arrays, meta)


def preprocess_folder(raw_dataset_dir: Path | str, out_dir: Path | str, data: DataSection, seed: int) -> dict[str, Any]:
    """The image-folder case of :func:`preprocess`: decode, crop and resize the recorded files into shards."""
    from vaelab.data.folder import WORKERS, read_checked, read_folder
    from vaelab.data.images import UnreadableImage, load_image

    raw_dataset_dir = Path(raw_dataset_dir)
    manifest, entries = read_folder(raw_dataset_dir, data.dataset)
    root = Path(manifest["image_dir"])
    if Path(data.image_dir).resolve() != root:
        raise DataError(f"{raw_dataset_dir / MANIFEST}: lists {root} but data.image_dir is {data.image_dir}; run `dvc repro download`")
    quotas = folder_quotas(len(entries), data)
    order = iter(np.random.default_rng(seed).permutation(len(entries)).tolist())
    writer = ProcessedWriter(out_dir, (data.image_size, data.image_size, 3))
    skipped: list[str] = []

    def decode(position: int) -> np.ndarray | str:
        entry = entries[position]
        try:
            return load_image(read_checked(root, entry), data.image_size, data.crop)
        except UnreadableImage as err:
            return f"{entry.path}: {err}"

    with ThreadPoolExecutor(WORKERS) as pool:
        for split in ("test", "val", "train"):
            while writer.count(split) < quotas[split]:
                chunk = [p for _, p in zip(range(min(DECODE_CHUNK, quotas[split] - writer.count(split))), order, strict=False)]
                if not chunk:
                    break
                images, labels = [], []
                for position, result in zip(chunk, pool.map(decode, chunk), strict=True):
                    if isinstance(result, str):
                        log.warning("skipping an unreadable image: %s", result)
                        skipped.append(result)
                    else:
                        images.append(result)
                        labels.append(entries[position].label)
                if images:
                    writer.add(split, np.stack(images), np.asarray(labels, dtype=np.uint8))
            if writer.count(split) == 0:
                raise DataError(
                    f"{root}: no readable image left for the {split} split ({len(skipped)} of {len(entries)} files "
                    "could not be decoded); see the warnings above"
                )
            writer.end_split(split)
    if skipped:
        log.warning("%s: skipped %d unreadable images of %d", root, len(skipped), len(entries))
    meta = {
        **_split_meta(data, manifest, seed),
        "test_fraction": data.test_fraction,
        "image_size": data.image_size,
        "crop": data.crop,
        "listed": len(entries),
        "unreadable": len(skipped),
        "unreadable_files": skipped,
    }
    return writer.finish(meta)


def folder_quotas(n: int, data: DataSection) -> dict[str, int]:
    """How many images each split of an ``n``-file folder should get (before unreadable files are skipped)."""
    n_test = round(n * data.test_fraction)
    n_val = round((n - n_test) * data.val_fraction)
    n_train = n - n_test - n_val
    if min(n_test, n_val, n_train) < 1:
        raise DataError(
            f"{n} images with data.test_fraction={data.test_fraction} and data.val_fraction={data.val_fraction} "
            f"give {n_train} train, {n_val} validation and {n_test} test images; every split needs at least one "
            "(add images or change the fractions)"
        )
    if data.max_test is not None:
        n_test = min(n_test, data.max_test)
    if data.max_train is not None and data.max_train < n_train:
        n_val = max(1, round(n_val * data.max_train / n_train))
        n_train = data.max_train
    return dict(zip(SPLITS, (n_train, n_val, n_test), strict=True))


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


def _split_meta(data: DataSection, manifest: dict, seed: int) -> dict:
    """What meta.json records for every dataset: where the data came from and how it was split."""
    return {
        "dataset": data.dataset,
        "source": manifest.get("source"),
        "class_names": list(manifest["class_names"]),
        "seed": seed,
        "val_fraction": data.val_fraction,
        "max_train": data.max_train,
        "max_test": data.max_test,
        "binarize": data.binarize,
    }
