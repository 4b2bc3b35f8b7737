"""uint8 shards: writing, reading rows back exactly, pixel statistics, and the tf.data batches built on them."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.data.processed import load_splits, write_splits
from vaelab.data.shards import ShardedImages, ShardWriter, image_batches, open_shard, to_uint8
from vaelab.errors import DataError

SHAPE = (3, 2, 1)
RERUN = "re-run"


def numbered(n: int) -> np.ndarray:
    """Image i is filled with the value i, so any row read back names itself."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, *SHAPE)).copy()


def write(folder, images: np.ndarray, per_shard: int, chunks: tuple[int, ...] = ()) -> ShardedImages:
    writer = ShardWriter(folder, "x_train", SHAPE, per_shard=per_shard)
    start = 0
    for size in (*chunks, len(images)):
        writer.append(images[start : start + size])
        start += size
        if start >= len(images):
            break
    files = writer.close()
    return ShardedImages([open_shard(folder / name, SHAPE, RERUN) for name in files], SHAPE)


def test_appends_of_any_size_fill_shards_in_order(tmp_path) -> None:
    images = write(tmp_path, numbered(10), per_shard=4, chunks=(3, 5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_train-00000.npy", "x_train-00001.npy", "x_train-00002.npy"]
    assert [s.count for s in images.shards] == [4, 4, 2]
    assert np.array_equal(np.load(tmp_path / "x_train-00002.npy"), numbered(10)[8:])
    assert len(images) == 10 and images.shape == (10, *SHAPE) and images.dtype == np.float32


@pytest.mark.parametrize(
    ("key", "rows"),
    [
        (slice(None), list(range(10))),
        (slice(3, 9), [3, 4, 5, 6, 7, 8]),
        (slice(None, None, 3), [0, 3, 6, 9]),
        (slice(9, None, -4), [9, 5, 1]),
        ([7, 2, 7, 9, 0], [7, 2, 7, 9, 0]),
        (np.array([-1, 3, 4, 5]), [9, 3, 4, 5]),
        ([], []),
    ],
    ids=["all", "slice-across-shards", "step", "reverse", "unsorted-duplicates", "negative", "empty"],
)
def test_rows_read_back_exactly_as_float(tmp_path, key, rows) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    expected = numbered(10)[rows].astype(np.float32) / np.float32(255)
    got = images[key]
    assert got.dtype == np.float32 and got.shape == (len(rows), *SHAPE)
    assert np.array_equal(got, expected)
    assert np.array_equal(images.read_uint8(key), numbered(10)[rows])


def test_integer_tuple_and_ellipsis_keys_act_like_numpy(tmp_path) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    array = numbered(10).astype(np.float32) / np.float32(255)
    assert np.array_equal(images[5], array[5])
    assert np.array_equal(images[-2], array[-2])
    assert np.array_equal(images[2:6, 0, 1, 0], array[2:6, 0, 1, 0])
    assert np.array_equal(images[..., 0], array[..., 0])
    assert np.array_equal(np.asarray(images), array)
    assert np.asarray(images, dtype=np.float64).dtype == np.float64
    with pytest.raises(IndexError, match="row 10 is out of range for 10 images"):
        images[10]
    with pytest.raises(IndexError, match="out of range"):
        images[[0, 11]]


@pytest.mark.parametrize(("count", "shard_counts"), [(6, [4, 2]), (8, [4, 4]), (1, [1]), (0, []), (25, [4, 4, 2])])
def test_head_is_a_shorter_view_that_reads_nothing(tmp_path, monkeypatch, count, shard_counts) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    with monkeypatch.context() as patch:
        patch.setattr(ShardedImages, "_read_sorted", lambda *_: pytest.fail("head() read images"))
        first = images.head(count)
    assert isinstance(first, ShardedImages) and [s.count for s in first.shards] == shard_counts
    assert np.array_equal(first.read_uint8(slice(None)), numbered(10)[:count])
    assert np.array_equal(first[-1:], images[min(count, 10) - 1 : min(count, 10)])
    with pytest.raises(ValueError, match="count must be at least 0; received -1"):
        images.head(-1)


def test_a_truncated_shard_is_a_data_error_naming_it(tmp_path) -> None:
    write(tmp_path, numbered(10), per_shard=4)
    path = tmp_path / "x_train-00001.npy"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"x_train-00001\.npy: .* bytes, the header promises .*; the file is truncated; re-run"):
        open_shard(path, SHAPE, RERUN)
    with pytest.raises(DataError, match=r"x_train-00000\.npy: holds uint8 \(4, 3, 2, 1\); expected uint8 \(n, 5, 2, 1\)"):
        open_shard(tmp_path / "x_train-00000.npy", (5, 2, 1), RERUN)


def test_float_images_are_stored_as_the_nearest_uint8(tmp_path) -> None:
    assert np.array_equal(to_uint8(np.array([[[0.0, 0.5, 1.0, 1.2, -0.1]]])), np.array([[[[0], [128], [255], [255], [0]]]], np.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        to_uint8(np.zeros((1, 2, 2), dtype=np.int32))


def test_split_statistics_are_exact_over_several_shards(tmp_path) -> None:
    # Values 0 and 255 in equal numbers: mean 0.5 and std 0.5 exactly, across shard boundaries.
    x = np.zeros((8, 2, 2, 1), np.uint8)
    x[::2] = 255
    arrays = {
        "x_train": x,
        "y_train": np.zeros(8, np.uint8),
        "x_val": x[:2],
        "y_val": np.zeros(2, np.uint8),
        "x_test": numbered(10)[:3, :2, :2],
        "y_test": np.zeros(3, np.uint8),
    }
    stats = write_splits(tmp_path, arrays, {"dataset": "mnist", "class_names": []})
    test_values = numbered(10)[:3, :2, :2].astype(np.float64) / 255
    assert stats["train"] == {"count": 8, "pixel_mean": 0.5, "pixel_std": 0.5}
    assert stats["test"] == {"count": 3, "pixel_mean": round(test_values.mean(), 6), "pixel_std": round(test_values.std(), 6)}
    splits = load_splits(tmp_path)
    assert not splits.labelled and splits.image_shape == (2, 2, 1)


def test_rewriting_a_smaller_split_removes_the_old_shards(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("vaelab.data.shards.SHARD_BYTES", 6)  # one 3x2x1 image per shard
    arrays = {f"{k}_{s}": (numbered(10) if k == "x" else np.zeros(10, np.uint8)) for s in ("train", "val", "test") for k in "xy"}
    write_splits(tmp_path, arrays, {"dataset": "mnist", "class_names": ["a"]})
    assert len(list(tmp_path.glob("x_train-*.npy"))) == 10
    small = {name: a[:2] for name, a in arrays.items()}
    write_splits(tmp_path, small, {"dataset": "mnist", "class_names": ["a"]})
    assert sorted(p.name for p in tmp_path.glob("x_*.npy")) == [f"x_{s}-0000{i}.npy" for s in ("test", "train", "val") for i in (0, 1)]
    on_disk = load_splits(tmp_path).x_train
    assert isinstance(on_disk, ShardedImages)
    assert np.array_equal(on_disk.read_uint8(slice(None)), numbered(2))


def _collect(dataset) -> list[np.ndarray]:
    return [batch.numpy() for batch in dataset]


def _assert_same_batches(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    # Counted first: a zip of the two would stop at the shorter one, and an empty stream would match anything.
    assert [b.shape for b in got] == [b.shape for b in expected]
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"batch {index}")


def test_batches_from_shards_equal_batches_from_the_same_array(tmp_path) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    array = np.asarray(images)
    plain = _collect(image_batches(images, 4))
    assert [b.shape[0] for b in plain] == [4, 4, 2]
    assert np.array_equal(np.concatenate(plain), array)
    assert plain[0].dtype == np.float32

    shuffled = _collect(image_batches(images, 3, seed=7, repeat=True).take(8))  # 2 epochs of 4 batches
    in_memory = _collect(image_batches(array, 3, seed=7, repeat=True).take(8))
    assert [b.shape[0] for b in shuffled] == [3, 3, 3, 1] * 2
    _assert_same_batches(shuffled, in_memory)
    first, second = np.concatenate(shuffled[:4]), np.concatenate(shuffled[4:])
    # Each epoch is a permutation of all ten images; the two epochs are shuffled differently.
    assert sorted(np.rint(first[:, 0, 0, 0] * 255).astype(int).tolist()) == list(range(10))
    assert sorted(np.rint(second[:, 0, 0, 0] * 255).astype(int).tolist()) == list(range(10))
    assert not np.array_equal(first, second)


def test_skip_continues_the_same_stream(tmp_path) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    whole = _collect(image_batches(images, 3, seed=1, repeat=True).take(9))
    resumed = _collect(image_batches(images, 3, seed=1, repeat=True, skip=5).take(4))
    assert len(whole) == 9
    _assert_same_batches(resumed, whole[5:])


def test_labels_travel_with_their_images(tmp_path) -> None:
    images = write(tmp_path, numbered(10), per_shard=4)
    labels = np.arange(10, dtype=np.uint8)[::-1].copy()
    seen = []
    for x, y in image_batches(images, 4, seed=2, labels=labels):
        rows = np.rint(x.numpy()[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(y.numpy(), labels[rows])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(10))  # the loop checked all ten images, each once: a loop over nothing passes too
    with pytest.raises(ValueError, match="10 images but 3 labels"):
        image_batches(images, 4, labels=labels[:3])
