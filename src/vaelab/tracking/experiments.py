"""Opening an experiment for a run: found or created, its UI view up to date, its orphaned runs ended.

:func:`open_experiment` is what every new run goes through (:mod:`.runs`) and what ``vaelab ui`` asks for
(:mod:`.ui`). Its name says what it does to the store: it may create or restore the experiment, rewrite
its view tags (:mod:`.view`) and end FAILED the runs whose process on this host died (:mod:`.orphans`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vaelab.config.schema import Config
from vaelab.errors import first_line
from vaelab.tracking.orphans import fail_orphaned_runs
from vaelab.tracking.store import ARTIFACTS_DIR, tracking_uri, with_retries
from vaelab.tracking.view import configure_experiment_view, headline_metrics

log = logging.getLogger(__name__)


def open_experiment(name: str, uri: str, config: Config | None = None) -> str:
    """The id of experiment ``name`` in the store at ``uri``: created if missing (restored if deleted), given the
    UI view whose metric columns are ``config``'s headline metrics (params.yaml's defaults if None), and with
    the runs that killed processes of this host left RUNNING ended FAILED."""
    client = MlflowClient(uri)
    experiment_id = _find_or_create_experiment(client, name, uri)
    configure_experiment_view(client, experiment_id, headline_metrics(config or Config()))
    fail_orphaned_runs(client, experiment_id)
    return experiment_id


def fail_orphaned_runs_of(experiment: str) -> list[str]:
    """End FAILED the experiment's runs whose process on this host died (see :mod:`.orphans`); return their ids.

    For a caller that outlives the killed process (the workers' launcher); a store it cannot reach is a warning.
    """
    client = MlflowClient(tracking_uri())
    try:
        found = with_retries(lambda: client.get_experiment_by_name(experiment))
        return fail_orphaned_runs(client, found.experiment_id) if found else []
    except (MlflowException, OSError) as err:
        log.warning("could not end the killed runs of experiment %r FAILED: %s", experiment, first_line(err))
        return []


def _find_or_create_experiment(client: MlflowClient, name: str, uri: str) -> str:
    experiment = with_retries(lambda: client.get_experiment_by_name(name))
    if experiment is None:
        try:
            return with_retries(lambda: client.create_experiment(name, artifact_location=artifact_location(uri, name)))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another process (a parallel sweep) won the race
                raise
            experiment = client.get_experiment_by_name(name)
            assert experiment is not None  # creating it failed because it exists
    if experiment.lifecycle_stage == "deleted":
        log.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def artifact_location(uri: str, experiment: str) -> str | None:
    """``mlartifacts/<experiment>/`` beside an SQLite database; a server or other store keeps its own default."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)
    return (database.resolve().parent / ARTIFACTS_DIR / folder).as_uri()
