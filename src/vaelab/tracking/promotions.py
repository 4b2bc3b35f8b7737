"""What promotion (:mod:`vaelab.sweep.promote`) reads from and writes to MLflow: the promoted experiment's evaluated
run, its registered version, and the record on the study's parent run.

Runs come back as plain dicts, so the sweep package needs no MLflow types.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from vaelab.config.schema import Config
from vaelab.metric_names import HEADLINE_PATTERN, evaluate_nll_metric
from vaelab.tracking.experiments import open_experiment
from vaelab.tracking.registry import BEST_ALIAS
from vaelab.tracking.runs import find_run
from vaelab.tracking.store import store_errors, tracking_uri, with_retries

log = logging.getLogger(__name__)


def evaluated_run(config: Config, run_id: str) -> dict[str, Any] | None:
    """``{"run_id", "run_name", "test_metrics"}`` (the headline metrics) of ``run_id`` if it is a FINISHED run of
    ``config.base.experiment`` that the evaluate stage scored, else None (also when the store has no such run)."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    with store_errors(uri):
        experiment_id = open_experiment(config.base.experiment, uri, config)
        run = find_run(client, run_id)
    if run is None:
        return None
    scored = evaluate_nll_metric(config) in run.data.metrics
    if run.info.experiment_id != experiment_id or run.info.status != "FINISHED" or not scored:
        return None
    headline = re.compile(HEADLINE_PATTERN)
    metrics = {key: value for key, value in sorted(run.data.metrics.items()) if headline.fullmatch(key)}
    return {"run_id": run.info.run_id, "run_name": run.info.run_name, "test_metrics": metrics}


def registration_of(run_id: str) -> dict[str, Any] | None:
    """``{"registered_model", "model_version", "best_version"}`` for the newest version made from ``run_id``."""
    client = MlflowClient(tracking_uri())
    versions = with_retries(lambda: client.search_model_versions(f"run_id = '{run_id}'"))
    if not versions:
        return None
    version = max(versions, key=lambda v: int(v.version))
    best = with_retries(lambda: client.get_model_version_by_alias(version.name, BEST_ALIAS))
    return {"registered_model": version.name, "model_version": int(version.version), "best_version": int(best.version)}


def record_on_run(run_id: str, tags: dict[str, str], metrics: dict[str, float], step: int, artifact: Path) -> bool:
    """Tags, metrics (at ``step``) and a file on the existing run ``run_id``, whatever its status; False if it is gone."""
    client = MlflowClient(tracking_uri())
    if find_run(client, run_id) is None:
        return False
    for key, value in tags.items():
        with_retries(partial(client.set_tag, run_id, key, value))
    for key, number in metrics.items():
        with_retries(partial(client.log_metric, run_id, key, number, step=step))
    with_retries(lambda: client.log_artifact(run_id, str(artifact)))
    return True
