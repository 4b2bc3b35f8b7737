"""The train stage's note to the evaluate stage: which run it trained, in which experiment and store.

``{"run_id", "experiment_id", "tracking_uri"}`` as JSON, the URI's password redacted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlflow.tracking import MlflowClient

from vaelab.errors import DataError
from vaelab.files import read_json, write_json
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import tracking_uri, with_retries

log = logging.getLogger(__name__)


def write_run_info(path: Path | str, run_id: str) -> None:
    """Leave the run's coordinates for the evaluate stage (``{"run_id", "experiment_id", "tracking_uri"}``)."""
    run = with_retries(lambda: MlflowClient(tracking_uri()).get_run(run_id))
    write_json(path, {"run_id": run_id, "experiment_id": run.info.experiment_id, "tracking_uri": redact_url(tracking_uri())})


def read_run_info(path: Path | str) -> str:
    """The run id that the train stage wrote to ``path``; DataError if the file is missing or broken."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run the train stage first (dvc repro train)")
    info = read_json(path, "run the train stage again")
    run_id = info.get("run_id")
    if run_id is None:
        raise DataError(f"{path}: no run_id in it; run the train stage again")
    if not isinstance(run_id, str) or not run_id:
        raise DataError(f"{path}: run_id must be a non-empty string, found {run_id!r}; run the train stage again")
    recorded = info.get("tracking_uri")
    if recorded and recorded != redact_url(tracking_uri()):
        log.warning("%s was written for tracking URI %s but the current one is %s", path, recorded, redact_url(tracking_uri()))
    return run_id
