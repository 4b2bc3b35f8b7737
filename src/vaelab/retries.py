"""The one retry loop for network requests (dataset downloads, the MLflow store) and what counts as transient.

A failure is worth another try when the other end may answer next time: a refused or reset connection, a
timeout, a transfer broken off, HTTP 408, 429 or 5xx. A name that does not resolve, a 404 or a bad request
stay as they are, so they fail at once. MLflow wraps the network error in its own exception, so the
causes of an exception are followed too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import requests

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_TRANSIENT_TYPES = (
    ConnectionError,
    TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    # MLflow's client already retried a 5xx (or 429) answer until its own budget ran out.
    requests.exceptions.RetryError,
)
_TRANSIENT_STATUS = {408, 429}


def is_transient(err: BaseException | None) -> bool:
    """Whether ``err`` (or an exception it was raised from) is a failure that another try may not meet."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, requests.HTTPError) and err.response is not None:
            status = err.response.status_code
            return status >= 500 or status in _TRANSIENT_STATUS
        if isinstance(err, requests.ConnectionError) and cause_name(err) == "NameResolutionError":
            return False  # an unknown host stays unknown; waiting only delays the next source
        if isinstance(err, _TRANSIENT_TYPES):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def retry(call: Callable[[], _T], delays: Sequence[float], what: str, describe: Callable[[BaseException], str] = str) -> _T:
    """``call()``, tried again after each of ``delays`` seconds while it fails transiently; other errors at once.

    Each retry is a warning naming ``what`` failed and why (``describe(err)``); the last failure is raised.
    """
    tries = len(delays) + 1
    for attempt, delay in enumerate(delays, start=1):
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            log.warning("%s failed (%s); trying again in %g s (%d of %d tries done)", what, describe(err), delay, attempt, tries)
            time.sleep(delay)
    return call()


def doubling(first: float, attempts: int) -> list[float]:
    """The delays between ``attempts`` tries, starting at ``first`` seconds and doubling."""
    return [first * 2**index for index in range(attempts - 1)]


def cause_name(err: BaseException) -> str:
    """The class name of the urllib3 error that requests wraps (e.g. NewConnectionError)."""
    inner = err.args[0] if err.args else None
    inner = getattr(inner, "reason", inner)
    return type(inner).__name__ if isinstance(inner, Exception) else type(err).__name__
