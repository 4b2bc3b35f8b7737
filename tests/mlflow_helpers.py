"""Reading a test's MLflow store back: MLflow's client answers None for what is missing, which a test should
state as a failure in its own words rather than meet as an AttributeError."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient


def experiment_runs(client: MlflowClient, name: str, max_results: int = 1000) -> list[Run]:
    """Every run of experiment ``name``; the experiment must exist."""
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name!r} in {client.tracking_uri}"
    return list(client.search_runs([experiment.experiment_id], max_results=max_results))
