"""`vaelab ui` (see :mod:`vaelab.ui_command`): the address of the experiment's training view, and MLflow's UI.

The view itself (the experiment's kind and the saved columns) is written by :mod:`.view` whenever the
experiment is opened (:func:`.experiments.open_experiment`); here it is only found and opened: the address
``#/experiments/<id>/runs?workflowType=machine_learning&viewStateShareKey=<key>`` opens that view in the
model-training side of the sidebar switch, whose default in a fresh browser is GenAI; with
``compareRunsMode=CHART`` it opens the view's charts (:mod:`.view_charts`) instead of its table. On an MLflow
release other than :data:`.view.TESTED_MLFLOW` the address is the plain runs page.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

from vaelab.config.schema import Config
from vaelab.errors import VaelabError
from vaelab.tracking.experiments import open_experiment
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import tracking_uri
from vaelab.tracking.view import VIEW_KEY, ui_state_tested

log = logging.getLogger(__name__)

# The runs page reads its sidebar switch from this URL parameter before the browser's remembered choice.
WORKFLOW_PARAM = ("workflowType", "machine_learning")
VIEW_PARAM = "viewStateShareKey"
CHARTS_PARAM = ("compareRunsMode", "CHART")

# `mlflow ui` 3.17 also starts a job runner and seven huey consumers (about 240 MB resident each) for its
# GenAI jobs (judges, issue detection, scheduled scorers); vaelab uses none of them. bench/ui_memory.py measures it.
LEAN_UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false"}
# One web worker: one user browsing one project's runs.
UI_WORKERS = 1


def experiment_address(base_url: str, experiment_id: str) -> str:
    """The address of the experiment's runs, opened in the training view with its columns.

    On an untested MLflow release, the plain runs page: no saved view was written for it to open.
    """
    runs = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if not ui_state_tested():
        return runs
    query = urlencode([WORKFLOW_PARAM, (VIEW_PARAM, VIEW_KEY)])
    return f"{runs}?{query}"


def training_view_address(experiment: str, host: str, port: int, config: Config | None = None) -> str:
    """The address of ``experiment``'s training view in the current store, created with its view if missing.

    ``host`` and ``port`` are where ``mlflow ui`` serves a database; a tracking server's address is its own.
    """
    uri = tracking_uri()
    experiment_id = open_experiment(experiment, uri, config)  # with its view
    base_url = redact_url(uri) if _is_server(uri) else f"http://{_url_host(host)}:{port}"
    return experiment_address(base_url, experiment_id)


def charts_address(view_address: str) -> str | None:
    """The same view as :func:`training_view_address`'s address, opened on its charts; None without a saved view."""
    if not ui_state_tested():
        return None
    return f"{view_address}&{urlencode([CHARTS_PARAM])}"


def run_mlflow_ui(host: str, port: int) -> None:
    """Replace this process with ``mlflow ui`` on the current store; a tracking server already serves its UI."""
    uri = tracking_uri()
    if _is_server(uri):
        log.info("%s is a tracking server and serves its own UI; not starting another", redact_url(uri))
        return
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    if not mlflow_cli.exists():
        raise VaelabError(f"no `mlflow` command beside {sys.executable}; install the requirements (make setup)")
    # exec: Ctrl-C and `kill` reach `mlflow ui` itself, as when make ran it directly. A switch the user set
    # in the environment wins over ours.
    os.execve(mlflow_cli, mlflow_ui_command(mlflow_cli, uri, host, port), {**LEAN_UI_ENV, **os.environ})


def mlflow_ui_command(mlflow_cli: Path, uri: str, host: str, port: int) -> list[str]:
    """``mlflow ui`` on ``uri`` with one web worker; run it with :data:`LEAN_UI_ENV` for no job processes."""
    return [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", str(UI_WORKERS)]


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _url_host(host: str) -> str:
    # Listening on every interface still means this machine to a browser opening the printed address.
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
