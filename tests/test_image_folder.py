"""Image folders: listing, decoding with crop and resize, the recorded manifest, and preprocessing into splits.

The folder is generated here: mixed sizes, grayscale, 16-bit, RGBA, one corrupt JPEG, one text file,
a hidden file and symlinks inside and outside the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.config.schema import DataSection
from vaelab.data.folder import FILE_LIST, class_names_of, list_images, read_folder, record_folder
from vaelab.data.images import UnreadableImage, crop_box, load_image
from vaelab.data.preprocess import folder_quotas, preprocess
from vaelab.data.processed import load_splits
from vaelab.data.synthetic import write_faces
from vaelab.errors import DataError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_mixed_folder(root: Path) -> Path:
    """26 listed image files (one corrupt) plus files that must not be listed."""
    folder = root / "mixed"
    write_faces(folder / "faces", 20, size=(48, 40), seed=1, suffix=".png")
    (folder / "rgb_wide.png").write_bytes(png_bytes(np.full((200, 300, 3), 90, np.uint8)))
    (folder / "gray_tall.png").write_bytes(png_bytes(np.full((80, 50), 200, np.uint8)))
    (folder / "gray16.PNG").write_bytes(png_bytes(np.full((40, 40), 256 * 100, np.uint16)))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 255
    (folder / "rgba.png").write_bytes(png_bytes(rgba))
    Image.fromarray(np.full((30, 20, 3), 50, np.uint8)).save(folder / "small.jpeg", quality=95)
    good_jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good_jpeg, format="JPEG")
    (folder / "corrupt.jpg").write_bytes(good_jpeg.getvalue()[: len(good_jpeg.getvalue()) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".hidden.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    (root / "outside.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    (folder / "link_out.png").symlink_to(root / "outside.png")
    (folder / "link_in.png").symlink_to(folder / "rgba.png")
    return folder


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return make_mixed_folder(tmp_path)


def folder_data(image_dir: Path, **changes) -> DataSection:
    return DataSection(dataset="image_folder", image_dir=image_dir, test_fraction=0.2, val_fraction=0.25, **changes)


def test_listing_is_recursive_sorted_and_skips_non_images_hidden_files_and_symlinks(mixed, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        listing = list_images(mixed)
    assert listing.root == mixed.resolve()
    expected = [
        "corrupt.jpg",
        *[f"faces/{i:06d}.png" for i in range(20)],
        "gray16.PNG",
        "gray_tall.png",
        "rgb_wide.png",
        "rgba.png",
        "small.jpeg",
    ]
    assert listing.files == sorted(expected)
    assert listing.skipped_links == ["link_out.png"]  # link_in.png points at a listed file: skipped quietly
    assert "skipped 1 symlinks pointing outside the folder or nowhere: link_out.png" in caplog.text
    assert class_names_of(listing.files) == ()  # files at the top level: no labels


def test_missing_and_empty_folders_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(
        DataError, match=r"^data\.image_dir .*nowhere does not exist; set data\.image_dir to a folder of JPEG or PNG images$"
    ):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"^data\.image_dir .*empty holds no images \(looked for \*\.jpg, \*\.jpeg, \*\.png in all subfolders\)"
    ):
        list_images(tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        list_images(tmp_path / "empty" / "readme.txt")


def test_crop_boxes_are_centred_squares() -> None:
    assert crop_box(178, 218, "celeba") == (15.0, 35.0, 163.0, 183.0)  # CelebA's usual 148 x 148 face crop
    assert crop_box(300, 200, "square") == (50.0, 0.0, 250.0, 200.0)
    assert crop_box(200, 300, "square") == (0.0, 50.0, 200.0, 250.0)
    with pytest.raises(ValueError, match="crop must be one of square, celeba"):
        crop_box(10, 10, "none")


@pytest.mark.parametrize("size", [64, 128])
def test_celeba_crop_keeps_the_face_region_and_resizes_to_the_size(size) -> None:
    # Red where the face crop (plus the filter's reach) is, blue around it.
    image = np.zeros((218, 178, 3), np.uint8)
    image[...] = BLUE
    image[35 - 8 : 183 + 8, 15 - 8 : 163 + 8] = RED
    out = load_image(png_bytes(image), size, "celeba")
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert np.all(out == RED)
    square = load_image(png_bytes(image), size, "square")  # the full width: blue shows at the edges
    assert np.array_equal(square[size // 2, size // 2], RED) and np.array_equal(square[0, 0], BLUE)


def test_grayscale_16_bit_and_transparent_images_become_rgb(mixed) -> None:
    assert np.all(load_image((mixed / "gray_tall.png").read_bytes(), 16, "square") == 200)
    assert np.all(load_image((mixed / "gray16.PNG").read_bytes(), 16, "square") == 100)  # 16-bit: the high byte
    half = np.zeros((32, 32, 4), np.uint8)
    half[:, :, 0] = 255  # red everywhere, but only the bottom half is opaque
    half[16:, :, 3] = 255
    out = load_image(png_bytes(half), 32, "square")
    assert np.all(out[:8] == 0) and np.all(out[-8:] == RED)  # transparency is composed onto black
    upscaled = load_image((mixed / "small.jpeg").read_bytes(), 64, "square")
    assert upscaled.shape == (64, 64, 3)


def test_undecodable_bytes_raise_unreadable_image(mixed) -> None:
    with pytest.raises(UnreadableImage, match="truncated"):
        load_image((mixed / "corrupt.jpg").read_bytes(), 16, "square")
    with pytest.raises(UnreadableImage, match="UnidentifiedImageError"):
        load_image(b"just text", 16, "square")


def test_record_folder_writes_the_file_list_and_manifest(mixed, tmp_path) -> None:
    target = record_folder(mixed, tmp_path / "raw")
    assert target == tmp_path / "raw" / "image_folder"
    manifest = json.loads((target / "manifest.json").read_text())
    text = (target / FILE_LIST).read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [path for path, _, _ in lines] == list_images(mixed).files
    rgba = next(line for line in lines if line[0] == "rgba.png")
    assert rgba[1:] == [(mixed / "rgba.png").stat().st_size, hashlib.sha256((mixed / "rgba.png").read_bytes()).hexdigest()]
    assert manifest["dataset"] == "image_folder" and manifest["count"] == 26
    assert manifest["image_dir"] == str(mixed.resolve())
    assert manifest["files_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert manifest["bytes"] == sum(size for _, size, _ in lines)
    assert manifest["class_names"] == [] and manifest["skipped_links"] == ["link_out.png"]


def test_preprocess_counts_skips_the_corrupt_file_and_splits_by_the_fractions(mixed, tmp_path, caplog) -> None:
    raw = record_folder(mixed, tmp_path / "raw")
    assert folder_quotas(26, folder_data(mixed)) == {"train": 16, "val": 5, "test": 5}
    with caplog.at_level(logging.WARNING):
        stats = preprocess(raw, tmp_path / "out", folder_data(mixed, image_size=64), seed=0)

    assert "skipping an unreadable image: corrupt.jpg: OSError: image file is truncated" in caplog.text
    assert {split: s["count"] for split, s in stats.items()} == {"train": 15, "val": 5, "test": 5}
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["listed"] == 26 and meta["unreadable"] == 1
    assert meta["unreadable_files"][0].startswith("corrupt.jpg: OSError")
    splits = load_splits(tmp_path / "out")
    assert splits.image_shape == (64, 64, 3) and not splits.labelled
    assert splits.x_train.shape == (15, 64, 64, 3)
    assert np.array_equal(splits.y_train, np.zeros(15, np.uint8))
    # The 300 x 200 grey image, cropped and resized, is somewhere in the splits, unchanged in colour.
    every = np.concatenate([np.asarray(splits.x_train), np.asarray(splits.x_val), np.asarray(splits.x_test)])
    assert any(np.all(image == np.float32(90) / np.float32(255)) for image in every)


def test_same_seed_gives_identical_files_another_seed_another_split(mixed, tmp_path) -> None:
    raw = record_folder(mixed, tmp_path / "raw")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        preprocess(raw, tmp_path / name, folder_data(mixed, image_size=16), seed=seed)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    test_a, test_c = (np.asarray(load_splits(tmp_path / n).x_test) for n in ("a", "c"))
    assert not np.array_equal(test_a, test_c)


def test_caps_shrink_the_splits_like_for_registered_datasets(mixed, tmp_path) -> None:
    raw = record_folder(mixed, tmp_path / "raw")
    stats = preprocess(raw, tmp_path / "out", folder_data(mixed, image_size=16, max_train=4, max_test=2), seed=0)
    # validation shrinks in proportion: round(5 * 4 / 16) = 1
    assert [stats[s]["count"] for s in ("train", "val", "test")] == [4, 1, 2]


def test_too_few_images_for_the_fractions_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(DataError, match=r"^3 images with data\.test_fraction=0\.2 and data\.val_fraction=0\.25 give 2 train, 0 validation"):
        folder_quotas(3, folder_data(tmp_path))


def test_subfolders_are_classes_and_labels_follow_the_images(tmp_path) -> None:
    for name, colour in (("blue", BLUE), ("red", RED)):
        (tmp_path / "two" / name).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "two" / name / f"{i}.png").write_bytes(png_bytes(np.full((12, 12, 3), colour, np.uint8)))
    raw = record_folder(tmp_path / "two", tmp_path / "raw")
    assert json.loads((raw / "manifest.json").read_text())["label_counts"] == [10, 10]
    preprocess(raw, tmp_path / "out", folder_data(tmp_path / "two", image_size=8), seed=0)
    splits = load_splits(tmp_path / "out")
    assert splits.class_names == ("blue", "red") and splits.labelled
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        red = np.asarray(x)[:, 0, 0, 0] == 1.0
        assert np.array_equal(red, y == 1)


def test_a_file_changed_after_download_stops_preprocessing(mixed, tmp_path) -> None:
    raw = record_folder(mixed, tmp_path / "raw")
    (mixed / "faces" / "000003.png").write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    with pytest.raises(DataError, match=r"000003\.png: changed since the download stage listed it; run `dvc repro download`"):
        preprocess(raw, tmp_path / "out", folder_data(mixed, image_size=8), seed=0)
    with pytest.raises(DataError, match=r"lists .*mixed but data\.image_dir is .*elsewhere; run `dvc repro download`"):
        preprocess(raw, tmp_path / "out", folder_data(tmp_path / "elsewhere"), seed=0)
    (raw / FILE_LIST).write_text("[]\n")
    with pytest.raises(DataError, match=r"files\.jsonl: does not match files_sha256 in manifest\.json"):
        read_folder(raw, "image_folder")
