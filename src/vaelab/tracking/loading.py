"""A logged vaelab model, found by run id or MLflow URI, loaded as its :class:`GenerativeVAE`.

``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run id>/model``, a bare run id (its
``model``), or a local MLflow model folder (one with an ``MLmodel`` file). The object returned is the one
MLflow's pyfunc wraps, so it behaves exactly as the model does behind ``mlflow models serve``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BARS
from mlflow.exceptions import MlflowException

from vaelab.errors import VaelabError, first_line
from vaelab.tracking.export import MODEL_NAME
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import fluent_store, store_errors, tracking_uri

if TYPE_CHECKING:
    from vaelab.tracking.generative_model import GenerativeVAE

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MLFLOW_SCHEMES = ("models:/", "runs:/")


def is_mlflow_reference(reference: str) -> bool:
    """An MLflow model URI or a bare run id (as opposed to a file path)."""
    return reference.startswith(MLFLOW_SCHEMES) or bool(RUN_ID.match(reference))


def model_uri(reference: str) -> str:
    """``runs:/<id>/model`` for a bare run id; any other reference as it is."""
    return f"runs:/{reference}/{MODEL_NAME}" if RUN_ID.match(reference) else reference


def load_logged_model(reference: str) -> GenerativeVAE:
    """The generative model logged at ``reference``; VaelabError (one line) if it is missing or cannot generate."""
    uri = model_uri(reference)
    if not uri.startswith(MLFLOW_SCHEMES) and not (Path(uri) / "MLmodel").is_file():
        raise VaelabError(f"{reference}: not a run id, a runs:/ or models:/ URI, a .keras file or an MLflow model folder")
    store = tracking_uri()
    try:
        with fluent_store(store), store_errors(store), _no_download_bars():
            pyfunc = mlflow.pyfunc.load_model(uri)
    except MlflowException as err:
        raise VaelabError(f"{reference}: {_not_found(err, redact_url(store))}") from None
    try:
        generator = pyfunc.unwrap_python_model()
    except MlflowException:
        generator = None
    if generator is None or not hasattr(generator, "sample"):
        raise VaelabError(
            f"{reference}: this model was logged before vaelab's generative format and can only reconstruct "
            "(mlflow.pyfunc.load_model(...).predict(images)); train it again to sample, encode and decode"
        )
    generator.model_uri = uri
    generator.run_id = pyfunc.metadata.run_id
    return generator


@contextmanager
def _no_download_bars() -> Iterator[None]:
    """A model is a few files of a few MB: MLflow's per-file progress bars would only bury the command's own output."""
    previous = os.environ.get(BARS.name)
    os.environ[BARS.name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(BARS.name, None)
        else:
            os.environ[BARS.name] = previous


def _not_found(err: MlflowException, store: str) -> str:
    message = first_line(err, 300)
    if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in message.lower() or "does not exist" in message.lower():
        return f"not found in the tracking store {store} ({message}); `vaelab compare` and `make ui` list its runs and models"
    return message
