"""Runs read back for comparison (``vaelab compare``): an experiment's runs as one table."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from vaelab.errors import VaelabError
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import fluent_store, tracking_uri, with_retries


def experiment_runs(experiment: str) -> pd.DataFrame:
    """The live runs of ``experiment`` in the current store, oldest first: ``mlflow.search_runs``'s table.

    One row per run: ``run_id``, ``status``, ``start_time``, ``metrics.<name>`` (the latest value),
    ``params.<name>``, ``tags.<name>``. VaelabError naming the experiments there if ``experiment`` is not.
    """
    uri = tracking_uri()
    client = MlflowClient(uri)
    found = with_retries(lambda: client.get_experiment_by_name(experiment))
    if found is None or found.lifecycle_stage == "deleted":
        names = sorted(e.name for e in with_retries(client.search_experiments))
        raise VaelabError(
            f"no MLflow experiment {experiment!r} in {redact_url(uri)}; experiments there: {', '.join(names) or 'none'} "
            "(set MLFLOW_TRACKING_URI to the store the pipeline used)"
        )
    with fluent_store(uri):
        return with_retries(lambda: mlflow.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]))
