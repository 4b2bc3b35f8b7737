"""preprocess() and load_splits() on small synthetic raw data written in the real raw format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import CLASS_NAMES, tiny_arrays

from vaelab.config.schema import DataSection
from vaelab.data.preprocess import preprocess, split_indices
from vaelab.data.processed import SPLITS, Splits, load_splits
from vaelab.data.raw import write_raw
from vaelab.data.shards import ShardedImages
from vaelab.errors import DataError


def make_raw(folder: Path, arrays: dict[str, np.ndarray], dataset: str = "mnist") -> Path:
    write_raw(folder, dataset=dataset, source="test arrays", class_names=CLASS_NAMES, arrays=arrays)
    return folder


@pytest.fixture
def raw_arrays() -> dict[str, np.ndarray]:
    return tiny_arrays(n_train=50, n_test=20)


@pytest.fixture
def raw_dir(tmp_path: Path, raw_arrays) -> Path:
    return make_raw(tmp_path / "raw" / "mnist", raw_arrays)


def train_positions(x: ShardedImages | np.ndarray) -> np.ndarray:
    """Which raw training image each processed image is: tiny_arrays stores i in pixel (0, 0)."""
    return np.rint(x[:, 0, 0, 0] * 255).astype(int)


def test_shapes_dtypes_range_and_split_sizes(raw_dir, raw_arrays, tmp_path) -> None:
    stats = preprocess(raw_dir, tmp_path / "out", DataSection(val_fraction=0.2), seed=3)
    splits = load_splits(tmp_path / "out")

    assert isinstance(splits, Splits)
    assert splits.x_train.shape == (40, 6, 6, 1)
    assert splits.x_val.shape == (10, 6, 6, 1)
    assert splits.x_test.shape == (20, 6, 6, 1)
    assert splits.image_shape == (6, 6, 1)
    assert splits.class_names == CLASS_NAMES
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert isinstance(x, ShardedImages)  # read from disk on demand, not held in memory
        assert x.dtype == np.float32 and np.asarray(x).dtype == np.float32
        assert np.asarray(x).min() >= 0.0 and np.asarray(x).max() <= 1.0
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert y.dtype == np.uint8
    assert {split: stats[split]["count"] for split in ("train", "val", "test")} == {"train": 40, "val": 10, "test": 20}


def test_splits_partition_the_raw_training_set_and_keep_labels(raw_dir, raw_arrays, tmp_path) -> None:
    preprocess(raw_dir, tmp_path / "out", DataSection(val_fraction=0.2), seed=3)
    splits = load_splits(tmp_path / "out")

    train, val = train_positions(splits.x_train), train_positions(splits.x_val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    assert np.array_equal(splits.y_train, raw_arrays["y_train"][train])
    assert np.array_equal(splits.x_val[..., 0], raw_arrays["x_train"][val].astype(np.float32) / np.float32(255))
    # the test set keeps its order
    assert np.array_equal(splits.x_test[..., 0], raw_arrays["x_test"].astype(np.float32) / np.float32(255))
    assert np.array_equal(splits.y_test, raw_arrays["y_test"])


def test_same_params_give_byte_identical_files(raw_dir, tmp_path) -> None:
    data = DataSection(val_fraction=0.2, max_train=30)
    preprocess(raw_dir, tmp_path / "a", data, seed=7)
    preprocess(raw_dir, tmp_path / "b", data, seed=7)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    shards = [f"x_{split}-00000.npy" for split in ("train", "val", "test")]
    assert names == sorted([*shards, *(f"y_{split}.npy" for split in SPLITS), "meta.json", "stats.json"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seed_gives_a_different_split(raw_dir, tmp_path) -> None:
    preprocess(raw_dir, tmp_path / "a", DataSection(val_fraction=0.2), seed=1)
    preprocess(raw_dir, tmp_path / "b", DataSection(val_fraction=0.2), seed=2)
    val_a = set(train_positions(load_splits(tmp_path / "a").x_val).tolist())
    val_b = set(train_positions(load_splits(tmp_path / "b").x_val).tolist())
    assert val_a != val_b


def test_caps_take_the_first_images_and_shrink_validation_in_proportion(raw_dir, tmp_path) -> None:
    preprocess(raw_dir, tmp_path / "full", DataSection(val_fraction=0.2), seed=5)
    preprocess(raw_dir, tmp_path / "capped", DataSection(val_fraction=0.2, max_train=20, max_test=7), seed=5)
    full, capped = load_splits(tmp_path / "full"), load_splits(tmp_path / "capped")

    assert len(capped.x_train) == 20
    assert len(capped.x_val) == 5  # 10 validation images * 20 / 40 training images
    assert len(capped.x_test) == 7
    assert np.array_equal(capped.x_train, full.x_train[:20])
    assert np.array_equal(capped.x_val, full.x_val[:5])
    assert np.array_equal(capped.x_test, full.x_test[:7])
    meta = json.loads((tmp_path / "capped" / "meta.json").read_text())
    assert meta["counts"] == {"train": 20, "val": 5, "test": 7}
    assert meta["max_train"] == 20 and meta["max_test"] == 7 and meta["seed"] == 5


def test_caps_larger_than_the_data_change_nothing(raw_dir, tmp_path) -> None:
    stats = preprocess(raw_dir, tmp_path / "out", DataSection(val_fraction=0.2, max_train=1000, max_test=1000), seed=0)
    assert [stats[s]["count"] for s in ("train", "val", "test")] == [40, 10, 20]


def test_stats_and_meta_have_exact_values(tmp_path) -> None:
    arrays = tiny_arrays(n_train=10, n_test=4, size=(2, 2))
    # test images: two black, two white -> mean 0.5, std 0.5 exactly
    arrays["x_test"] = np.array([0, 0, 255, 255], dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), dtype=np.uint8)
    raw = make_raw(tmp_path / "raw", arrays)

    stats = preprocess(raw, tmp_path / "out", DataSection(val_fraction=0.2), seed=0)

    assert stats["test"] == {"count": 4, "pixel_mean": 0.5, "pixel_std": 0.5}
    x_train = np.load(tmp_path / "out" / "x_train-00000.npy").astype(np.float64) / 255
    assert stats["train"]["pixel_mean"] == round(float(x_train.mean()), 6)
    assert stats["train"]["pixel_std"] == round(float(x_train.std()), 6)
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == stats
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta == {
        "dataset": "mnist",
        "source": "test arrays",
        "image_shape": [2, 2, 1],
        "class_names": list(CLASS_NAMES),
        "counts": {"train": 8, "val": 2, "test": 4},
        "shards": {split: [f"x_{split}-00000.npy"] for split in ("train", "val", "test")},
        "seed": 0,
        "val_fraction": 0.2,
        "max_train": None,
        "max_test": None,
        "binarize": "none",  # grey levels, so no binarize_seed either
    }


def test_split_indices_rounds_and_rejects_empty_splits() -> None:
    train, val = split_indices(10, 0.25, seed=0)  # round(2.5) == 2
    assert (len(train), len(val)) == (8, 2)
    with pytest.raises(DataError, match=r"data\.val_fraction=0\.01 leaves 0 of 10 training images for validation"):
        split_indices(10, 0.01, seed=0)
    with pytest.raises(DataError, match=r"data\.val_fraction=0\.99 leaves 10 of 10"):
        split_indices(10, 0.99, seed=0)


def test_raw_data_of_another_dataset_is_refused(tmp_path, raw_arrays) -> None:
    raw = make_raw(tmp_path / "raw" / "fashion_mnist", raw_arrays, dataset="fashion_mnist")
    with pytest.raises(DataError, match=r"holds 'fashion_mnist' but data\.dataset is 'mnist'; run `dvc repro download`"):
        preprocess(raw, tmp_path / "out", DataSection(), seed=0)


def test_missing_raw_data_tells_the_user_what_to_run(tmp_path) -> None:
    with pytest.raises(DataError, match=r"manifest\.json: not found; run `dvc repro download`"):
        preprocess(tmp_path / "nothing", tmp_path / "out", DataSection(), seed=0)


def test_load_splits_names_a_missing_file(raw_dir, tmp_path) -> None:
    preprocess(raw_dir, tmp_path / "out", DataSection(val_fraction=0.2), seed=0)
    (tmp_path / "out" / "y_val.npy").unlink()
    with pytest.raises(DataError, match=r"y_val\.npy: not found; run `dvc repro preprocess`"):
        load_splits(tmp_path / "out")
    with pytest.raises(DataError, match=r"meta\.json: not found; run `dvc repro preprocess`"):
        load_splits(tmp_path / "empty")
