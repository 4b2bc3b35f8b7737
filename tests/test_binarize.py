"""Bernoulli binarization: the stored bits (fixed, and validation and test under dynamic) are the same on every
run and machine, and the dynamic bits drawn as training reads its batches are fresh each epoch yet repeat
exactly on a re-run or a resumed run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from data_helpers import CLASS_NAMES, tiny_arrays
from training_helpers import InterruptAfterEpoch, weights_of

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config, DataSection
from vaelab.data.binarize import SEED, binarize_raw, stored_splits
from vaelab.data.preprocess import preprocess, split_indices
from vaelab.data.processed import check_made_from, load_splits
from vaelab.data.raw import load_raw, write_raw
from vaelab.data.shards import image_batches
from vaelab.errors import InputMismatchError
from vaelab.training import read_checkpoint, train

# Every grey level 0..255 about 153 times, in order: 50 MNIST-sized images.
GREY = (np.arange(50 * 28 * 28) % 256).astype(np.uint8).reshape(50, 28, 28)
# sha256 of binarize_raw(GREY, "train"), computed once. The bits come from NumPy's PCG64 seeded through
# SeedSequence, whose stream is the same on every platform: a different digest means the stored test bits
# (and so every published likelihood) changed.
GREY_TRAIN_BITS_SHA256 = "d805aadd119c6bc181b7eb8a3493127a4fa122c605e8e5da0504a7818116da19"


def test_fixed_bits_are_the_same_on_every_run_and_machine() -> None:
    bits = binarize_raw(GREY, "train")
    assert bits.dtype == np.uint8 and bits.shape == GREY.shape
    assert hashlib.sha256(bits.tobytes()).hexdigest() == GREY_TRAIN_BITS_SHA256
    # The test set draws from a stream of its own.
    assert not np.array_equal(binarize_raw(GREY, "test"), bits)


def test_fixed_bits_are_0_or_255_with_black_and_white_kept() -> None:
    bits = binarize_raw(GREY, "train")
    assert set(np.unique(bits).tolist()) == {0, 255}
    assert np.all(bits[GREY == 0] == 0)
    assert np.all(bits[GREY == 255] == 255)


def test_a_pixel_is_on_with_probability_its_grey_level() -> None:
    on = binarize_raw(GREY, "train") == 255
    for level in range(1, 255):
        pixels = on[level == GREY]
        p = level / 255
        standard_error = np.sqrt(p * (1 - p) / len(pixels))  # about 0.04 for 153 pixels at p = 1/2
        assert abs(pixels.mean() - p) < 5 * standard_error, level
    p_all = GREY.mean() / 255
    assert abs(on.mean() - p_all) < 3 * np.sqrt(np.mean((np.arange(256) / 255) * (1 - np.arange(256) / 255)) / GREY.size)


def test_an_images_bits_depend_only_on_its_place_in_the_raw_set() -> None:
    bits = binarize_raw(GREY, "train")
    np.testing.assert_array_equal(binarize_raw(GREY[:10], "train"), bits[:10])  # no matter how many follow
    other_first = GREY.copy()
    other_first[:10] = 255 - other_first[:10]
    np.testing.assert_array_equal(binarize_raw(other_first, "train")[10:], bits[10:])  # nor what comes before


def test_bits_do_not_depend_on_how_the_raw_set_is_cut_into_draws() -> None:
    # 5000 tiny images span two of binarize_raw's draws of 4096 images; a prefix ending just past the first
    # draw must get the bits the whole set gives those images.
    grey = np.random.default_rng(0).integers(0, 256, (5000, 2, 2), dtype=np.uint8)
    whole = binarize_raw(grey, "test")
    np.testing.assert_array_equal(binarize_raw(grey[:4097], "test"), whole[:4097])
    # One stream read in order: the same bits as all uniforms drawn at once.
    uniforms = np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED, 1]))).random(grey.shape)
    np.testing.assert_array_equal(whole, np.where(uniforms * 255 < grey, 255, 0).astype(np.uint8))


def test_which_splits_are_stored_binarized() -> None:
    assert stored_splits("none") == ()
    assert stored_splits("dynamic") == ("val", "test")
    assert stored_splits("fixed") == ("train", "val", "test")


# --- preprocess ---------------------------------------------------------------------------------------------


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    arrays = tiny_arrays(n_train=50, n_test=20)
    arrays["x_train"][:, 0, 0] = 128  # tiny_arrays numbers the images there; here every pixel is random grey
    write_raw(tmp_path / "raw", dataset="mnist", source="test arrays", class_names=CLASS_NAMES, arrays=arrays)
    return tmp_path / "raw"


def _shard(folder: Path, split: str) -> np.ndarray:
    return np.load(folder / f"x_{split}-00000.npy")


def _processed(raw_dir: Path, out: Path, binarize: Literal["none", "dynamic", "fixed"], seed: int = 3, **data) -> Path:
    preprocess(raw_dir, out, DataSection(val_fraction=0.2, binarize=binarize, **data), seed=seed)
    return out


def test_dynamic_stores_validation_and_test_bits_and_keeps_training_grey(raw_dir: Path, tmp_path: Path) -> None:
    out = _processed(raw_dir, tmp_path / "dynamic", "dynamic")
    raw = load_raw(raw_dir)
    train_idx, val_idx = split_indices(50, 0.2, seed=3)

    np.testing.assert_array_equal(_shard(out, "train")[..., 0], raw["x_train"][train_idx])  # grey, as read
    np.testing.assert_array_equal(_shard(out, "val")[..., 0], binarize_raw(raw["x_train"], "train")[val_idx])
    np.testing.assert_array_equal(_shard(out, "test")[..., 0], binarize_raw(raw["x_test"], "test"))
    for split in ("val", "test"):
        assert set(np.unique(_shard(out, split)).tolist()) == {0, 255}, split
    assert len(np.unique(_shard(out, "train"))) > 100
    splits = load_splits(out)
    assert set(np.unique(np.asarray(splits.x_test)).tolist()) == {0.0, 1.0}  # what evaluation reads

    meta = json.loads((out / "meta.json").read_text())
    assert (meta["binarize"], meta["binarize_seed"]) == ("dynamic", SEED)


def test_fixed_stores_every_split_binarized_with_the_same_validation_and_test_bits(raw_dir: Path, tmp_path: Path) -> None:
    fixed = _processed(raw_dir, tmp_path / "fixed", "fixed")
    dynamic = _processed(raw_dir, tmp_path / "dynamic", "dynamic")
    raw = load_raw(raw_dir)
    train_idx, _ = split_indices(50, 0.2, seed=3)

    np.testing.assert_array_equal(_shard(fixed, "train")[..., 0], binarize_raw(raw["x_train"], "train")[train_idx])
    for split in ("train", "val", "test"):
        assert set(np.unique(_shard(fixed, split)).tolist()) == {0, 255}, split
    for split in ("val", "test"):
        np.testing.assert_array_equal(_shard(fixed, split), _shard(dynamic, split), err_msg=split)
    meta = json.loads((fixed / "meta.json").read_text())
    assert (meta["binarize"], meta["binarize_seed"]) == ("fixed", SEED)


def test_the_test_bits_do_not_depend_on_the_seed_or_the_cap(raw_dir: Path, tmp_path: Path) -> None:
    one = _processed(raw_dir, tmp_path / "one", "dynamic", seed=1)
    two = _processed(raw_dir, tmp_path / "two", "dynamic", seed=2)
    capped = _processed(raw_dir, tmp_path / "capped", "dynamic", seed=2, max_test=7, max_train=20)
    assert (one / "x_test-00000.npy").read_bytes() == (two / "x_test-00000.npy").read_bytes()
    np.testing.assert_array_equal(_shard(capped, "test"), _shard(one, "test")[:7])
    # The validation images differ with the seed, but each raw image keeps its bits.
    raw_bits = binarize_raw(load_raw(raw_dir)["x_train"], "train")
    for seed, folder in ((1, one), (2, two)):
        _, val_idx = split_indices(50, 0.2, seed=seed)
        np.testing.assert_array_equal(_shard(folder, "val")[..., 0], raw_bits[val_idx])


def test_grey_data_records_binarize_none_and_no_bits_seed(raw_dir: Path, tmp_path: Path) -> None:
    out = _processed(raw_dir, tmp_path / "none", "none")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["binarize"] == "none" and "binarize_seed" not in meta
    np.testing.assert_array_equal(_shard(out, "test")[..., 0], load_raw(raw_dir)["x_test"])


def test_a_stage_refuses_data_binarized_otherwise_than_params_say(raw_dir: Path, tmp_path: Path) -> None:
    grey = _processed(raw_dir, tmp_path / "none", "none")
    wanted = with_overrides(Config(), {"base.seed": 3, "data.val_fraction": 0.2, "data.binarize": "dynamic"})
    check_made_from(_processed(raw_dir, tmp_path / "dynamic", "dynamic"), wanted.split_settings())  # accepted
    with pytest.raises(InputMismatchError) as caught:
        check_made_from(grey, wanted.split_settings())
    assert str(caught.value).startswith(
        f"{grey / 'meta.json'}: holds data made with binarize='none' but params.yaml says data.binarize='dynamic'; "
    )


def test_data_made_before_binarization_counts_as_grey(raw_dir: Path, tmp_path: Path) -> None:
    old = _processed(raw_dir, tmp_path / "old", "none")
    meta = json.loads((old / "meta.json").read_text())
    del meta["binarize"]  # what preprocess wrote before data.binarize existed
    (old / "meta.json").write_text(json.dumps(meta))
    check_made_from(old, with_overrides(Config(), {"base.seed": 3, "data.val_fraction": 0.2}).split_settings())  # grey: accepted
    wanted = with_overrides(Config(), {"base.seed": 3, "data.val_fraction": 0.2, "data.binarize": "fixed"})
    with pytest.raises(InputMismatchError, match="holds data made with binarize='none' but params.yaml says data.binarize='fixed'"):
        check_made_from(old, wanted.split_settings())


# --- dynamic binarization as training reads -----------------------------------------------------------------

# 12 images of grey 0.5 and one black and one white row, numbered by their labels.
DYNAMIC_X = np.full((12, 4, 4, 1), 0.5, dtype=np.float32)
DYNAMIC_X[:, 0] = 0.0
DYNAMIC_X[:, 1] = 1.0
LABELS = np.arange(12)


def _stream(n_batches: int, skip: int = 0, binarize_seed: int | None = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = image_batches(DYNAMIC_X, 4, seed=5, repeat=True, skip=skip, labels=LABELS, binarize_seed=binarize_seed)
    return [(x.numpy(), y.numpy()) for x, y in batches.take(n_batches)]


def _by_image(batches) -> np.ndarray:
    """The images of one pass (3 batches of 4), ordered by label."""
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(12))
    return images[np.argsort(labels)]


def test_dynamic_batches_hold_only_zeros_and_ones_with_black_and_white_kept() -> None:
    batches = _stream(6)
    assert len(batches) == 6
    images = np.concatenate([x for x, _ in batches])
    assert images.dtype == np.float32
    assert set(np.unique(images).tolist()) == {0.0, 1.0}
    assert np.all(images[:, 0] == 0.0) and np.all(images[:, 1] == 1.0)
    # grey 0.5 elsewhere: 72 images x 8 pixels, about half on (standard error 0.02)
    assert abs(images[:, 2:].mean() - 0.5) < 0.08


def test_each_epoch_draws_new_bits_for_the_same_image() -> None:
    batches = _stream(6)  # two passes of 3 batches
    first, second = _by_image(batches[:3]), _by_image(batches[3:])
    for image in range(12):
        assert not np.array_equal(first[image], second[image]), image


def test_a_stream_started_later_draws_the_bits_of_the_unskipped_one() -> None:
    whole = _stream(8)
    resumed = _stream(4, skip=4)
    assert len(whole) == 8 and len(resumed) == 4
    for index, ((x, y), (x_resumed, y_resumed)) in enumerate(zip(whole[4:], resumed, strict=True)):
        np.testing.assert_array_equal(y_resumed, y, err_msg=f"batch {index + 4}")
        np.testing.assert_array_equal(x_resumed, x, err_msg=f"batch {index + 4}")


def test_the_same_binarize_seed_repeats_the_bits_and_another_changes_them() -> None:
    first, again, other = _stream(3), _stream(3), _stream(3, binarize_seed=8)
    for (x, y), (x_again, _), (x_other, y_other) in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(x_again, x)
        np.testing.assert_array_equal(y_other, y)  # the shuffle is base.seed's, not the bits'
        assert not np.array_equal(x_other, x)
    grey = _stream(3, binarize_seed=None)
    assert 0.5 in np.unique(np.concatenate([x for x, _ in grey]))  # without it the batches stay grey


@pytest.mark.slow
def test_a_resumed_dynamic_training_repeats_the_uninterrupted_one(tiny_train_config, square_splits, tmp_path) -> None:
    config = tiny_train_config(**{"data.binarize": "dynamic", "train.epochs": 2})
    uninterrupted = train(config, square_splits, verbose=0)
    grey = train(tiny_train_config(**{"train.epochs": 2}), square_splits, verbose=0)
    assert grey.history[0]["loss"] != pytest.approx(uninterrupted.history[0]["loss"], rel=1e-3)  # it does binarize

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=[InterruptAfterEpoch(1)], verbose=0)
    assert (read_checkpoint(checkpoints, config, tuple(square_splits.image_shape)) or {}).get("epoch") == 1
    resumed = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)

    assert resumed.initial_epoch == 1
    # Bit for bit on a quiet CPU; 1e-5 allows for thread-order round-off (see test_training). Epoch 2's bits
    # drawn anew instead of continued would move the weights by several 1e-3.
    for a, b in zip(weights_of(uninterrupted.model), weights_of(resumed.model), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for row, resumed_row in zip(uninterrupted.history, resumed.history, strict=True):
        assert resumed_row == pytest.approx(row, rel=1e-4)
