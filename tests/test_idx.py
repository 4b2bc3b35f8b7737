"""IDX parsing: valid files of several shapes, and every way a header and its data can disagree."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from vaelab.data.idx import parse_idx, read_idx, write_idx
from vaelab.errors import DataError


def idx_bytes(sizes: tuple[int, ...], payload: bytes, dtype_code: int = 0x08) -> bytes:
    return bytes([0, 0, dtype_code, len(sizes)]) + struct.pack(f">{len(sizes)}I", *sizes) + payload


def test_labels_file_parses_to_1d_uint8() -> None:
    data = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x04" + bytes([7, 0, 9, 255])
    labels = parse_idx(data, "labels")
    assert labels.dtype == np.uint8
    assert labels.tolist() == [7, 0, 9, 255]


def test_images_file_parses_big_endian_sizes_in_row_major_order() -> None:
    # 2 images of 2 rows x 3 columns; a size of 258 would be read as 0x0201... if the byte order were wrong
    data = idx_bytes((2, 2, 3), bytes(range(12)))
    images = parse_idx(data, "images")
    assert images.shape == (2, 2, 3)
    assert images[1].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert parse_idx(idx_bytes((258,), bytes(258)), "long").shape == (258,)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 5), (2, 3, 4, 2), (0, 28, 28)])
def test_write_then_parse_round_trips(shape: tuple[int, ...]) -> None:
    array = np.arange(np.prod(shape), dtype=np.int64).astype(np.uint8).reshape(shape)
    assert np.array_equal(parse_idx(write_idx(array), "round trip"), array)


def test_write_idx_header_is_exact() -> None:
    assert write_idx(np.array([1, 2, 3], dtype=np.uint8)) == b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"


def test_write_idx_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="uint8 arrays only; received dtype=float32"):
        write_idx(np.zeros(3, dtype=np.float32))


def test_truncated_data_names_both_sizes() -> None:
    data = idx_bytes((2, 2, 3), bytes(11))
    with pytest.raises(DataError, match=r"^train-images: header says 12 bytes, file has 11$"):
        parse_idx(data, "train-images")


def test_trailing_bytes_are_rejected() -> None:
    data = idx_bytes((4,), bytes(5))
    with pytest.raises(DataError, match=r"^labels: header says 4 bytes, file has 5$"):
        parse_idx(data, "labels")


def test_nonzero_magic_is_not_idx() -> None:
    data = b"\x01\x00" + idx_bytes((3,), bytes(3))[2:]
    with pytest.raises(DataError, match=r"^labels: not an IDX file \(starts with 0x01 0x00, expected 0x00 0x00\)$"):
        parse_idx(data, "labels")


def test_gzip_bytes_passed_without_decompressing_are_not_idx() -> None:
    with pytest.raises(DataError, match="starts with 0x1f 0x8b"):
        parse_idx(gzip.compress(idx_bytes((3,), bytes(3))), "labels.gz")


@pytest.mark.parametrize(("code", "kind"), [(0x0D, "float32"), (0x0C, "int32"), (0x42, "unknown")])
def test_unsupported_dtype_byte_is_named(code: int, kind: str) -> None:
    data = idx_bytes((2,), bytes(8), dtype_code=code)
    with pytest.raises(DataError, match=rf"^x: IDX data type 0x{code:02x} \({kind}\) is not supported; only 0x08 \(uint8\)$"):
        parse_idx(data, "x")


def test_header_cut_short_is_rejected() -> None:
    with pytest.raises(DataError, match="IDX header with 3 dimensions needs 16 bytes, file has 10"):
        parse_idx(b"\x00\x00\x08\x03" + bytes(6), "x")
    with pytest.raises(DataError, match="2 bytes is too short for an IDX header"):
        parse_idx(b"\x00\x00", "x")


def test_zero_dimensions_is_rejected() -> None:
    with pytest.raises(DataError, match="declares 0 dimensions"):
        parse_idx(b"\x00\x00\x08\x00\x07", "x")


def test_read_idx_handles_plain_and_gzip_files(tmp_path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(write_idx(array))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(write_idx(array)))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), array)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), array)


def test_read_idx_names_the_file_for_bad_gzip_and_truncation(tmp_path) -> None:
    broken = tmp_path / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: not a valid gzip file"):
        read_idx(broken)
    short = tmp_path / "t10k-images-idx3-ubyte.gz"
    short.write_bytes(gzip.compress(idx_bytes((2, 2, 2), bytes(7))))
    with pytest.raises(DataError, match=r"^t10k-images-idx3-ubyte\.gz: header says 8 bytes, file has 7$"):
        read_idx(short)
    with pytest.raises(DataError, match="missing.gz: file not found"):
        read_idx(tmp_path / "missing.gz")
