"""The raw-data folder that `download` writes and `preprocess` reads, and the checksums guarding it.

Format of ``<paths.raw>/<dataset>/``:

- ``x_train.npy``, ``y_train.npy``, ``x_test.npy``, ``y_test.npy``: plain ``.npy`` files (no pickle),
  all uint8. Images are ``(N, H, W)`` for greyscale or ``(N, H, W, C)``; labels are ``(N,)``
  class indices into ``class_names``.
- ``manifest.json``, written last, so a folder without one is incomplete:

  .. code-block:: json

     {
       "dataset": "mnist",
       "source": "IDX files at https://...",
       "class_names": ["0", "1", ...],
       "files": {"x_train.npy": {"sha256": "...", "bytes": 47040128}, ...},
       "arrays": {"x_train": {"sha256": "...", "shape": [60000, 28, 28], "dtype": "uint8"}, ...},
       "label_counts": {"train": [5923, ...], "test": [980, ...]}
     }

  ``arrays.*.sha256`` is the sha256 of the array's ``.tobytes()``, the same value the dataset
  registry pins (``DatasetSpec.expected_arrays``), so it does not depend on the ``.npy`` header.
  ``label_counts`` has one entry per class name.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.errors import DataError
from vaelab.files import atomic_path, ensure_dir, read_json, write_json

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def array_sha256(array: np.ndarray) -> str:
    return sha256_bytes(np.ascontiguousarray(array).tobytes())


def check_hash(data: bytes, known_hash: str, name: str) -> None:
    """Raise a DataError naming ``name`` unless ``data`` matches ``known_hash`` ("alg:hex", e.g. "md5:...")."""
    algorithm, _, expected = known_hash.rpartition(":")
    actual = hashlib.new(algorithm or "sha256", data).hexdigest()
    if actual != expected.lower():
        raise checksum_error(name, known_hash, f"{algorithm}:{actual}" if algorithm else actual)


def checksum_error(name: str, expected: str, actual: str, hint: str = "") -> DataError:
    return DataError(f"{name}: checksum mismatch, expected {expected}, got {actual}{hint}")


def write_raw(
    dataset_dir: Path | str,
    *,
    dataset: str,
    source: str,
    class_names: Sequence[str],
    arrays: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Write the four arrays and then the manifest; return the manifest."""
    dataset_dir = ensure_dir(dataset_dir)
    # An old manifest must not vouch for a half-replaced folder if this write is interrupted.
    (dataset_dir / MANIFEST).unlink(missing_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name in ARRAY_NAMES:
        array = np.ascontiguousarray(arrays[name])
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        with atomic_path(dataset_dir / f"{name}.npy") as tmp:
            tmp.write_bytes(data)
        files[f"{name}.npy"] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    manifest = {
        "dataset": dataset,
        "source": source,
        "class_names": list(class_names),
        "files": files,
        "arrays": {name: describe_array(arrays[name]) for name in ARRAY_NAMES},
        "label_counts": {split: np.bincount(arrays[f"y_{split}"], minlength=len(class_names)).tolist() for split in ("train", "test")},
    }
    write_json(dataset_dir / MANIFEST, manifest)
    return manifest


def describe_array(array: np.ndarray) -> dict[str, Any]:
    return {"sha256": array_sha256(array), "shape": list(array.shape), "dtype": str(array.dtype)}


def read_manifest(dataset_dir: Path | str) -> dict[str, Any]:
    path = Path(dataset_dir) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: not found; run `dvc repro download` (or `vaelab download`)")
    manifest = read_json(path, "delete the folder and run `dvc repro download`")
    missing = [key for key in ("dataset", "class_names", "files", "arrays") if key not in manifest]
    if missing:
        raise DataError(f"{path}: missing keys {', '.join(missing)}; delete the folder and run `dvc repro download`")
    return manifest


def load_raw(dataset_dir: Path | str) -> dict[str, np.ndarray]:
    """Load the four arrays, checking each file against the manifest's sha256."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    arrays = {}
    for name in ARRAY_NAMES:
        path = dataset_dir / f"{name}.npy"
        expected = manifest["files"].get(path.name, {}).get("sha256")
        if expected is None:
            raise DataError(f"{dataset_dir / MANIFEST}: no checksum for {path.name}; run `dvc repro download`")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: not found; run `dvc repro download`") from None
        actual = sha256_bytes(data)
        if actual != expected:
            raise checksum_error(str(path), expected, actual, "; the file changed since download, run `dvc repro download`")
        arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
    return arrays
