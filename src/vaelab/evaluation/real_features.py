"""The classifier's feature statistics of the real validation and test images, computed once per classifier.

``sample_fid_classifier`` compares the features of a model's samples with those of real images. The real side
depends only on the classifier and the images, never on the VAE, so the classifier stage computes it once (in
the same pass that gives its test accuracy) and saves the mean and covariance of each split in
``paths.classifier``/``feature_statistics.npz``; the evaluate stage and every sweep trial read them instead of
passing the 10,000 test (or validation) images through the classifier again.

Each split's statistics carry a digest of the images they were computed on. :func:`load` returns them only when
the images in hand have that digest, so a stage run by hand on other data, or a sweep on a capped validation
split, computes the statistics afresh instead of comparing with the wrong images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaelab.files import atomic_path

if TYPE_CHECKING:
    import keras

    from vaelab.data.shards import ShardedImages

STATISTICS_FILE = "feature_statistics.npz"
READ_BATCH = 1000  # images hashed at a time: a split on disk is read a batch at a time, never whole

Statistics = tuple[np.ndarray, np.ndarray]  # mean (F,) and covariance (F, F), float64


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and covariance ``(F, F)`` (denominator N - 1) of ``(N, F)`` features, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors as an (N, F) array; received shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1], features.shape[1])


def images_digest(images: ShardedImages | np.ndarray) -> str:
    """sha256 of the images as float32 bytes, with their shape: the same images give the same digest."""
    digest = hashlib.sha256(repr(tuple(np.shape(images[:0])[1:]) + (len(images),)).encode())
    for start in range(0, len(images), READ_BATCH):
        digest.update(np.ascontiguousarray(images[start : start + READ_BATCH], dtype=np.float32).tobytes())
    return digest.hexdigest()


def measure(
    classifier: keras.Model, images_by_split: dict[str, ShardedImages | np.ndarray], batch_size: int = 1000
) -> tuple[dict[str, tuple[Statistics, str]], dict[str, np.ndarray]]:
    """One classifier pass per split: ``({split: (statistics, images_digest)}, {split: class probabilities})``.

    A split of fewer than two images has no covariance, so no statistics (its probabilities are still returned).
    """
    from vaelab.evaluation.classifier import features_and_probabilities

    statistics, probabilities = {}, {}
    for split, images in images_by_split.items():
        features, probabilities[split] = features_and_probabilities(classifier, images, batch_size)
        if len(features) >= 2:
            statistics[split] = (feature_statistics(features), images_digest(images))
    return statistics, probabilities


def save(folder: Path, statistics: dict[str, tuple[Statistics, str]]) -> Path:
    """Write ``{split: ((mean, covariance), images_digest)}`` to ``folder``/STATISTICS_FILE, atomically."""
    arrays: dict[str, np.ndarray] = {}
    for split, ((mean, covariance), digest) in statistics.items():
        arrays[f"{split}_mean"] = np.asarray(mean, np.float64)
        arrays[f"{split}_covariance"] = np.asarray(covariance, np.float64)
        arrays[f"{split}_digest"] = np.asarray(digest)
    path = Path(folder) / STATISTICS_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as out:  # a file object: np.savez would append .npz to a name
        np.savez(out, allow_pickle=False, **arrays)
    return path


def load(folder: Path, split: str, images: ShardedImages | np.ndarray) -> Statistics | None:
    """The saved statistics of ``split`` if they were computed on exactly ``images``; else None."""
    path = Path(folder) / STATISTICS_FILE
    if not path.is_file():
        return None
    with np.load(path) as saved:
        if f"{split}_digest" not in saved.files or str(saved[f"{split}_digest"]) != images_digest(images):
            return None
        return saved[f"{split}_mean"], saved[f"{split}_covariance"]
