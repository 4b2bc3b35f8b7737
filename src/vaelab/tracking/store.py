"""The MLflow tracking store: where it is, whether it answers, and how a request to it is retried.

The store is ``MLFLOW_TRACKING_URI`` when set (a server or a database), else ``mlflow.db`` in the project root
with artifacts in ``mlartifacts/`` beside it. The project root is the DVC repository's, also for experiments
that DVC runs in temporary copies of it (``dvc exp run --temp``, the queue), so every run of the project lands
in one store. A store that cannot be reached or written ends in a :class:`StoreError` naming it. Experiments are
opened in :mod:`.experiments`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import mlflow
import requests
from mlflow.exceptions import MlflowException

from vaelab.errors import VaelabError, first_line
from vaelab.retries import doubling, is_transient, retry
from vaelab.tracking.redact import redact_url

log = logging.getLogger(__name__)

DEFAULT_DB = Path("mlflow.db")
ARTIFACTS_DIR = "mlartifacts"

_T = TypeVar("_T")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
# MLflow's codes for a store that fails underneath a valid request (SQLite locked or read-only, a database down).
_STORE_FAILURE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "IO_ERROR"}


def project_root() -> Path:
    """The folder of the default store: ``DVC_ROOT`` under DVC, else the current directory.

    DVC sets ``DVC_ROOT`` for every stage command. For an experiment run in a temporary copy of the
    repository (``.dvc/tmp/exps/...``, by ``--temp`` or a queue worker) it names the original repository,
    not the copy, which DVC deletes afterwards together with anything written inside it.
    """
    return Path(os.environ.get("DVC_ROOT") or ".").resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an SQLite file ``mlflow.db`` in :func:`project_root`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DEFAULT_DB}"


@contextmanager
def fluent_store(uri: str) -> Iterator[None]:
    """MLflow's module-level functions (``mlflow.log_metric``, ``mlflow.search_runs``) on ``uri`` inside the block."""
    exported = "MLFLOW_TRACKING_URI" in os.environ
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if not exported:
            # set_tracking_uri also exports the URI to the environment; left there, a later run started
            # from another folder (a test's tmp_path) would keep writing to this folder's store.
            os.environ.pop("MLFLOW_TRACKING_URI", None)


class StoreError(VaelabError):
    """The tracking store cannot be reached or written: the stage stops with one line naming the store."""


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as err:
        # A run that does not exist, a param that differs: MLflow's answers about the request, not the store.
        if not is_transient(err) and err.error_code not in _STORE_FAILURE_CODES:
            raise
        raise StoreError(unreachable(uri, err)) from None
    except Exception as err:
        if not is_transient(err):
            raise
        raise StoreError(unreachable(uri, err)) from None


def check_server_answers(uri: str, attempts: int = 3, first_delay: float = 1.0) -> None:
    """Fail within seconds when a tracking server is down at the start, before any work.

    MLflow's client would retry every request for minutes with back-off, which suits a server restarting
    in the middle of a training (see :func:`with_retries`) but not one that is not there at all. Any HTTP
    answer counts as reachable: a proxy in front of the server may not serve /health.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        retry(lambda: requests.get(f"{uri.rstrip('/')}/health", timeout=(3, 10)), doubling(first_delay, attempts), redact_url(uri))
    except requests.exceptions.RequestException as err:  # also an invalid URL: the store cannot be reached either way
        raise ConnectionError(str(err)) from None


def check_sqlite_writable(uri: str) -> None:
    """An SQLite store whose folder or file cannot be written fails here, in one line.

    Left to MLflow, a read-only database logs a full SQLAlchemy traceback, and a database that cannot be
    created is retried for minutes. SQLite also writes a journal beside the file, so the folder must take files.
    """
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri.removeprefix("sqlite:///"))
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=database.parent, prefix=".mlflow-write-check-"):
            pass
        if database.exists():
            database.open("r+b").close()
    except OSError as err:
        raise StoreError(unreachable(uri, err)) from None


def unreachable(uri: str, err: BaseException) -> str:
    text = str(err).strip()
    # requests nests the socket's own words ("[Errno 111] Connection refused") three wrappers deep.
    errno = _ERRNO.search(text)
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror
    elif errno:
        reason = errno.group(0).rstrip(": ")
    else:
        reason = redact_url(first_line(err, 300))
    remedy = "start the server (make server)" if uri.startswith(("http://", "https://")) else "make it writable"
    return (
        f"MLflow tracking store {redact_url(uri)} cannot be reached or written ({reason}); {remedy} or point "
        "MLFLOW_TRACKING_URI at another store (unset, runs go to mlflow.db in the project root)"
    )


def with_retries(call: Callable[[], _T], attempts: int = 4, first_delay: float = 0.5) -> _T:
    """``call()``, retried with doubling delays when the tracking server cannot be reached or keeps answering 5xx.

    This comes on top of MLflow's own retries of each request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    7 by default with doubling back-off), which already ride out a server restart of a minute or so.
    """
    return retry(call, doubling(first_delay, attempts), "MLflow request", lambda err: redact_url(first_line(err, 300)))
