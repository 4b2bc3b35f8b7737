"""Read the classic ``mnist.pkl.gz`` without letting the pickle run code.

A pickle names the callables that rebuild its objects, and ``pickle.load`` imports and calls any
of them. :class:`NumpyOnlyUnpickler` resolves only the three numpy names a pickled ndarray needs
and refuses every other name before importing it. Callers check the file's sha256 first: this is
the second line of defence, not the first.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib

import numpy as np

from vaelab.errors import DataError

# numpy < 2 pickles name numpy.core.multiarray, numpy 2 renamed it numpy._core; asking an array for
# its reduce function gives the current one without importing the deprecated alias.
_reconstruct = np.empty(0).__reduce__()[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that rebuilds numpy arrays, tuples, lists and plain values, and nothing else."""

    def __init__(self, file, name: str):
        # latin1: the classic file is a Python 2 pickle whose array buffers are byte strings.
        super().__init__(file, encoding="latin1")
        self.name = name

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.name}: the pickle asks for {module}.{name}; refusing it (only numpy arrays are allowed)") from None


def restricted_loads(data: bytes, name: str) -> object:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`; any failure is a DataError naming ``name``."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), name).load()
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt pickle fails in many ways; all mean the same to the user
        raise DataError(f"{name}: cannot unpickle ({type(err).__name__}: {err})") from None


def read_mnist_pickle(gz_data: bytes, name: str, image_size: tuple[int, int] = (28, 28)) -> dict[str, np.ndarray]:
    """Decode the gzip'd ``(train, valid, test)`` pickle into the canonical uint8 arrays.

    Each part is ``(x float32 (N, H*W), y int (N,))`` with pixels stored as ``uint8 / 256``;
    train + valid, in that order, is the canonical training set.
    """
    try:
        data = gzip.decompress(gz_data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{name}: not a valid gzip file ({err})") from None
    parts = restricted_loads(data, name)
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(_is_pair(p) for p in parts)):
        raise DataError(f"{name}: expected a tuple (train, valid, test) of (images, labels) array pairs")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    return {
        "x_train": _pixels_to_uint8(np.concatenate([x_train, x_valid]), name, image_size),
        "y_train": _labels_to_uint8(np.concatenate([y_train, y_valid]), name),
        "x_test": _pixels_to_uint8(x_test, name, image_size),
        "y_test": _labels_to_uint8(y_test, name),
    }


def _is_pair(part: object) -> bool:
    return isinstance(part, tuple) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)


def _pixels_to_uint8(x: np.ndarray, name: str, image_size: tuple[int, int]) -> np.ndarray:
    pixels = image_size[0] * image_size[1]
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != pixels:
        raise DataError(f"{name}: images have dtype {x.dtype} and shape {x.shape}; expected float (N, {pixels})")
    # Multiplying by a power of two is exact in floating point, so stored uint8/256 values come back as
    # whole numbers; anything else (or NaN) fails the range check or the comparison with the truncated copy.
    scaled = x * np.float32(256)
    if len(x) and not (scaled.min() >= 0 and scaled.max() <= 255):
        raise DataError(f"{name}: pixel values outside [0, 255/256]; expected uint8 / 256")
    levels = scaled.astype(np.uint8)
    if not np.array_equal(levels, scaled):
        raise DataError(f"{name}: pixel values are not exact multiples of 1/256; expected uint8 / 256")
    return levels.reshape(len(x), *image_size)


def _labels_to_uint8(y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() > 255)):
        raise DataError(f"{name}: labels must be integers 0..255 of shape (N,); got dtype {y.dtype}, shape {y.shape}")
    return y.astype(np.uint8)
