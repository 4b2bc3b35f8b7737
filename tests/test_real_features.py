"""The classifier stage's saved feature statistics of real images: the digest that ties them to their images,
and saving and loading them (sample_quality with them is in test_quality, the stages in test_classifier)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vaelab.evaluation.real_features import READ_BATCH, STATISTICS_FILE, images_digest, load, save


def test_the_digest_is_sha256_of_the_shape_and_float32_bytes_read_in_batches() -> None:
    images = np.random.default_rng(0).uniform(size=(READ_BATCH * 2 + 7, 2, 3, 1)).astype(np.float32)
    expected = hashlib.sha256(repr((2, 3, 1, len(images))).encode() + images.tobytes()).hexdigest()
    assert images_digest(images) == expected
    assert images_digest(images.astype(np.float64)) == expected  # the values, not how they are stored


def test_any_change_to_the_images_changes_the_digest() -> None:
    images = np.random.default_rng(1).uniform(size=(20, 4, 4, 1)).astype(np.float32)
    digest = images_digest(images)
    nudged = images.copy()
    nudged[13, 2, 1, 0] = np.nextafter(nudged[13, 2, 1, 0], np.float32(2))
    assert images_digest(nudged) != digest
    assert images_digest(images[:19]) != digest
    assert images_digest(images.reshape(20, 2, 8, 1)) != digest  # the same bytes in another shape


def test_saved_statistics_come_back_only_for_the_images_they_were_computed_on(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x_val, x_test = rng.uniform(size=(6, 4, 4, 1)), rng.uniform(size=(9, 4, 4, 1))
    val_stats = (rng.normal(size=3), rng.normal(size=(3, 3)))
    test_stats = (rng.normal(size=3), rng.normal(size=(3, 3)))
    path = save(tmp_path, {"val": (val_stats, images_digest(x_val)), "test": (test_stats, images_digest(x_test))})
    assert path == tmp_path / STATISTICS_FILE and [p.name for p in tmp_path.iterdir()] == [STATISTICS_FILE]

    loaded = load(tmp_path, "test", x_test)
    assert loaded is not None
    mean, covariance = loaded
    np.testing.assert_array_equal(mean, test_stats[0])
    np.testing.assert_array_equal(covariance, test_stats[1])
    assert (loaded_val := load(tmp_path, "val", x_val)) is not None
    np.testing.assert_array_equal(loaded_val[0], val_stats[0])
    assert load(tmp_path, "test", x_val) is None  # other images
    assert load(tmp_path, "test", x_test[:8]) is None  # a capped split
    assert load(tmp_path, "train", x_test) is None  # a split never saved
    assert load(tmp_path / "elsewhere", "test", x_test) is None  # no file
