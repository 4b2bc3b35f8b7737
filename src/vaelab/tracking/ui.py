"""`vaelab ui` (see :mod:`vaelab.ui_command`): the address of the experiment's training view, and MLflow's UI.

The view itself (the experiment's kind and the saved columns) is written by :mod:`.view` whenever the
experiment is opened (:func:`.experiments.open_experiment`); here it is only found and opened: the address
``#/experiments/<id>/runs?workflowType=machine_learning&viewStateShareKey=<key>`` opens that view in the
model-training side of the sidebar switch, whose default in a fresh browser is GenAI.
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
from vaelab.tracking.view import VIEW_KEY

log = logging.getLogger(__name__)

# The runs page reads its sidebar switch from this URL parameter before the browser's remembered choice.
WORKFLOW_PARAM = ("workflowType", "machine_learning")
VIEW_PARAM = "viewStateShareKey"


def experiment_address(base_url: str, experiment_id: str) -> str:
    """The address of the experiment's runs, opened in the training view with its columns."""
    query = urlencode([WORKFLOW_PARAM, (VIEW_PARAM, VIEW_KEY)])
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def training_view_address(experiment: str, host: str, port: int, config: Config | None = None) -> str:
    """The address of ``experiment``'s training view in the current store, created with its view if missing.

    ``host`` and ``port`` are where ``mlflow ui`` serves a database; a tracking server's address is its own.
    """
    uri = tracking_uri()
    experiment_id = open_experiment(experiment, uri, config)  # with its view
    base_url = redact_url(uri) if _is_server(uri) else f"http://{_url_host(host)}:{port}"
    return experiment_address(base_url, experiment_id)


def run_mlflow_ui(host: str, port: int) -> None:
    """Replace this process with ``mlflow ui`` on the current store; a tracking server already serves its UI."""
    uri = tracking_uri()
    if _is_server(uri):
        log.info("%s is a tracking server and serves its own UI; not starting another", redact_url(uri))
        return
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    if not mlflow_cli.exists():
        raise VaelabError(f"no `mlflow` command beside {sys.executable}; install the requirements (make setup)")
    # exec: Ctrl-C and `kill` reach `mlflow ui` itself, as when make ran it directly.
    os.execv(mlflow_cli, [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)])


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _url_host(host: str) -> str:
    # Listening on every interface still means this machine to a browser opening the printed address.
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
