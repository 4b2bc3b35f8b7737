"""The IDX format of the MNIST family: read it strictly, write it for tests and fixtures.

Layout (big-endian): two zero bytes, a type byte, a byte with the number of dimensions, one
4-byte size per dimension, then the data. Only type 0x08 (unsigned byte) is supported, which is
what every MNIST-style dataset uses. A file whose length disagrees with its header is corrupt.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import DataError

UINT8 = 0x08
TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode IDX bytes into a uint8 array of the shape the header gives; ``name`` starts every error."""
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes is too short for an IDX header (at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (starts with 0x{data[0]:02x} 0x{data[1]:02x}, expected 0x00 0x00)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != UINT8:
        kind = TYPE_NAMES.get(dtype_code, "unknown")
        raise DataError(f"{name}: IDX data type 0x{dtype_code:02x} ({kind}) is not supported; only 0x08 (uint8)")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions; expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{name}: IDX header with {ndim} dimensions needs {header_size} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    # Sizes count the data after the header, the same way the header's sizes do.
    expected, actual = math.prod(shape), len(data) - header_size
    if expected != actual:
        raise DataError(f"{name}: header says {expected} bytes, file has {actual}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def read_idx(path: Path | str) -> np.ndarray:
    """Read an IDX file, gzip-compressed when its name ends in ``.gz``."""
    path = Path(path)
    return parse_idx(read_idx_bytes(path, missing="file not found"), path.name)


def read_idx_bytes(path: Path, missing: str = "not found") -> bytes:
    """The uncompressed bytes of an IDX file (gunzipped when its name ends in ``.gz``), before any parsing,
    so a caller can check their hash first. ``missing`` is the message for an absent file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: not a valid gzip file ({err})") from None
    return data


def write_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx supports uint8 arrays only; received dtype={array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx needs 1 to 255 dimensions; received ndim={array.ndim}")
    header = bytes([0, 0, UINT8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
