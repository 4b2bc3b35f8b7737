"""Fashion-MNIST: the registry entry, its two kinds of source on tiny IDX files, and (if installed) Debian's real files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json

import numpy as np
import pytest
from data_helpers import FileServer, gz, md5, tiny_arrays

from vaelab.config.schema import DataSection
from vaelab.data import fetch as fetch_module
from vaelab.data.download import download
from vaelab.data.idx import write_idx
from vaelab.data.preprocess import preprocess
from vaelab.data.processed import load_splits
from vaelab.data.raw import array_sha256, load_raw
from vaelab.data.sources import (
    DATASETS,
    FASHION_MNIST,
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_URL,
    DatasetSpec,
    IdxDirectorySource,
    IdxFile,
    IdxHttpSource,
)
from vaelab.errors import DataError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILE_NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.01, 0.01))


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return tiny_arrays(n_train=40, n_test=10, size=(28, 28), seed=3)


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def served_files(arrays) -> dict[str, bytes]:
    return {FILE_NAMES[name]: gz(write_idx(array)) for name, array in arrays.items()}


def registry_sources() -> tuple[IdxHttpSource, IdxHttpSource, IdxDirectorySource]:
    """Fashion-MNIST's sources in the registry's order, each checked to be of the kind the tests move elsewhere."""
    canonical, github, debian = FASHION_MNIST.sources
    assert isinstance(canonical, IdxHttpSource) and isinstance(github, IdxHttpSource), FASHION_MNIST.sources
    assert isinstance(debian, IdxDirectorySource), debian
    return canonical, github, debian


def http_copy(url: str, files: dict[str, bytes]) -> IdxHttpSource:
    """The registry's canonical source, moved to ``url`` and pinned (md5 of the .gz, as served) to ``files``."""
    canonical = registry_sources()[0]
    pins = {name: IdxFile(entry.filename, f"md5:{md5(files[entry.filename])}") for name, entry in canonical.files.items()}
    return dataclasses.replace(canonical, base_url=url, files=pins)


def debian_copy(folder, arrays) -> IdxDirectorySource:
    """The registry's Debian source, moved to ``folder``: files recompressed, pinned by their uncompressed sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    debian = registry_sources()[-1]
    pins = {}
    for name, entry in debian.files.items():
        raw = write_idx(arrays[name])
        (folder / entry.filename).write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
        pins[name] = IdxFile(entry.filename, f"sha256:{hashlib.sha256(raw).hexdigest()}")
    return dataclasses.replace(debian, directory=folder, files=pins)


def spec_with(sources, arrays) -> DatasetSpec:
    return dataclasses.replace(FASHION_MNIST, sources=tuple(sources), expected_arrays={n: array_sha256(a) for n, a in arrays.items()})


def test_registry_has_the_canonical_mirrors_then_debians_folder_each_with_its_own_pins() -> None:
    assert DATASETS["fashion_mnist"] is FASHION_MNIST
    assert FASHION_MNIST.class_names == CLASS_NAMES
    assert FASHION_MNIST.image_shape == (28, 28, 1)
    canonical, github, debian = registry_sources()
    assert canonical.base_url == FASHION_MNIST_URL == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert github.base_url == "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
    assert {n: (f.filename, f.known_hash) for n, f in canonical.files.items()} == {
        "x_train": ("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "y_train": ("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
        "x_test": ("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
        "y_test": ("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
    }
    assert isinstance(debian, IdxDirectorySource) and debian.directory == FASHION_MNIST_DEBIAN_DIR
    assert str(FASHION_MNIST_DEBIAN_DIR) == "/usr/share/datasets/fashion-mnist"
    assert {n: f.known_hash for n, f in debian.files.items()} == {
        "x_train": "sha256:c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "y_train": "sha256:bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "x_test": "sha256:5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "y_test": "sha256:0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
    assert "apt-get install dataset-fashion-mnist" in debian.hint
    assert set(FASHION_MNIST.expected_arrays) == {"x_train", "y_train", "x_test", "y_test"}


def test_download_from_a_local_http_copy_then_preprocess_keeps_the_class_names(server, arrays, tmp_path) -> None:
    files = served_files(arrays)
    server.serve_files(files, prefix="fashion/")

    target = download(spec_with([http_copy(server.url + "fashion/", files)], arrays), tmp_path / "raw")

    assert target == tmp_path / "raw" / "fashion_mnist"
    raw = load_raw(target)
    assert all(np.array_equal(raw[name], array) for name, array in arrays.items())
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["source"] == f"IDX files at {server.url}fashion/"
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert server.requests == {f"/fashion/{name}": 1 for name in files}

    preprocess(target, tmp_path / "processed", DataSection(dataset="fashion_mnist", val_fraction=0.25), seed=0)
    splits = load_splits(tmp_path / "processed")
    assert splits.class_names == CLASS_NAMES and splits.image_shape == (28, 28, 1)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (30, 10, 10)


def test_http_checksum_mismatch_names_the_file_and_both_hashes(server, arrays, tmp_path) -> None:
    files = served_files(arrays)
    tampered = dict(files, **{FILE_NAMES["y_train"]: gz(write_idx(arrays["y_train"][::-1].copy()))})
    server.serve_files(tampered)

    with pytest.raises(DataError) as caught:
        download(spec_with([http_copy(server.url, files)], arrays), tmp_path / "raw")

    name = FILE_NAMES["y_train"]
    assert f"{name}: checksum mismatch, expected md5:{md5(files[name])}, got md5:{md5(tampered[name])}" in str(caught.value)
    assert list((tmp_path / "raw").rglob("*")) == []


def test_debian_layout_folder_is_used_when_the_mirror_is_unreachable(server, arrays, tmp_path) -> None:
    # The server answers 404 for every file: the canonical mirror is "down".
    sources = [http_copy(server.url, served_files(arrays)), debian_copy(tmp_path / "debian", arrays)]

    target = download(spec_with(sources, arrays), tmp_path / "raw")

    assert json.loads((target / "manifest.json").read_text())["source"] == f"IDX files in {tmp_path / 'debian'}"
    raw = load_raw(target)
    assert all(np.array_equal(raw[name], array) for name, array in arrays.items())
    assert server.total_requests == 1  # a 404 is not retried, and the first failing file ends that source


def test_debian_checksum_mismatch_and_missing_folder_are_one_line_errors(arrays, tmp_path) -> None:
    source = debian_copy(tmp_path / "debian", arrays)
    changed = arrays["x_test"].copy()
    changed[0, 0, 0] ^= 1
    raw = write_idx(changed)
    (tmp_path / "debian" / FILE_NAMES["x_test"]).write_bytes(gzip.compress(raw))
    expected = source.files["x_test"].known_hash

    with pytest.raises(DataError) as caught:
        download(spec_with([source], arrays), tmp_path / "raw")
    message = str(caught.value)
    assert (
        f"t10k-images-idx3-ubyte.gz (uncompressed): checksum mismatch, expected {expected}, got sha256:{hashlib.sha256(raw).hexdigest()}"
        in message
    )
    assert "\n" not in message

    absent = dataclasses.replace(source, directory=tmp_path / "nowhere")
    with pytest.raises(
        DataError, match=r"nowhere/train-images-idx3-ubyte\.gz: not found; install it with `sudo apt-get install dataset-fashion-mnist`"
    ):
        download(spec_with([absent], arrays), tmp_path / "raw")


@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debians_real_files_match_the_registry(tmp_path) -> None:
    only_debian = dataclasses.replace(FASHION_MNIST, sources=FASHION_MNIST.sources[-1:])
    target = download(only_debian, tmp_path / "raw")  # verifies every pinned sha256 on the way

    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["label_counts"] == {"train": [6000] * 10, "test": [1000] * 10}
    assert manifest["arrays"]["x_train"]["shape"] == [60000, 28, 28]
    x_train = load_raw(target)["x_train"]
    assert round(float(x_train.mean(dtype=np.float64)) / 255, 4) == 0.2860
