"""Crash-safe file output (write under a temporary name in the same folder, then rename) and the JSON reader.

A reader (or DVC) therefore sees either the old file or the complete new one, never half a file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaelab.errors import DataError, VaelabError


@contextmanager
def atomic_path(final: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` if the block succeeds.

    ``suffix`` defaults to the final name's suffix, for writers that insist on one (Keras wants ``.keras``).
    """
    final = Path(final)
    ensure_dir(final.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix if suffix is not None else final.suffix, dir=final.parent)
    except OSError as err:
        raise _write_error(final, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600 files; outputs get the usual permissions the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except OSError as err:
        if err.errno in _STORAGE_ERRNOS:
            raise _write_error(final, err) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


# A full disk, a quota, a read-only or forbidden folder: the user can fix these, so one line, not a traceback.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_error(final: Path, err: OSError) -> VaelabError:
    return VaelabError(f"cannot write {final}: {err.strerror or err}; free space or choose another folder in params.yaml paths")


def ensure_dir(path: Path | str) -> Path:
    """Create a folder (and parents); an unwritable location is a one-line error naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VaelabError(f"cannot create folder {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK):
        raise VaelabError(f"folder {path} is not writable")
    return path


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically, keys sorted so the same data gives the same bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: Path | str, remedy: str) -> dict[str, Any]:
    """The JSON object in ``path``; DataError ``"<path>: <what is wrong>; <remedy>"`` if it is missing or broken."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {remedy}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err}); {remedy}") from None
    except ValueError as err:  # not JSON, or not UTF-8
        raise DataError(f"{path}: not valid JSON ({type(err).__name__}: {err}); {remedy}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a JSON {type(data).__name__}, not an object; {remedy}")
    return data
