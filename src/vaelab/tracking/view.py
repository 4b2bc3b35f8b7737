"""The experiment's view in the MLflow UI as a user of a training pipeline expects it: the experiment's runs,
with the metrics and params that matter as columns, in MLflow's model-training view rather than its GenAI view.

Everything here is MLflow 3.17's own state, kept in the tracking store so that any fresh browser gets it:

- ``mlflow.experimentKind = custom_model_development``: the experiment's kind, as MLflow's kind selector
  writes it (3.17's page follows its sidebar switch instead, but the tag still records what the experiment is);
- ``mlflow.sharedViewState.<key>``: a saved view of the runs page (the "Views" menu) holding the selected
  columns, in the envelope the page itself writes (``{name, createdAt, updatedAt, state}``, ``state`` a JSON
  string of the page's search facets and UI state), and its charts (:mod:`.view_charts`).

These formats are internals of the MLflow release named by ``TESTED_MLFLOW``. On any other release the view is
not written (one warning says so) and :mod:`.ui` prints the plain runs page, which every release has.

:func:`.experiments.open_experiment` writes them; :mod:`.ui` prints the address that opens the view.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vaelab.config.schema import Config
from vaelab.errors import first_line
from vaelab.metric_names import evaluate_neg_elbo_metric, evaluate_nll_metric
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import with_retries
from vaelab.tracking.view_charts import chart_cards, chart_sections

log = logging.getLogger(__name__)

# The MLflow release (major.minor) whose UI state formats the tags and addresses below were written and
# checked against (tests/test_browser.py). Raise it only after that test passes on the new release.
TESTED_MLFLOW = "3.17"

KIND_TAG = "mlflow.experimentKind"
# The other values MLflow knows: genai_development, finetuning, forecasting, classification, regression, automl.
TRAINING_KIND = "custom_model_development"
VIEW_KEY = "vaelab-training-runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "Training runs (vaelab)"

# The train.* keys of params.yaml's `sweep.space`: what tells one run of the experiment from another.
SWEPT_PARAMS = ("train.z_dim", "train.r_loss_factor", "train.learning_rate")


def headline_metrics(config: Config) -> tuple[str, ...]:
    """The metrics the view shows: negative ELBO and NLL under their names for ``config`` (K, data), sample FID."""
    return (evaluate_neg_elbo_metric(config), evaluate_nll_metric(config), "sample_fid_classifier")


def view_columns(metrics: Sequence[str]) -> list[str]:
    """The runs table's column ids, as in the grid's ``col-id`` attributes (metrics.`name`, params.`name`).

    The page's own Dataset column is left out: at its fixed width it pushes the swept params off a laptop's
    screen (the view's column widths are not applied). The runs still carry their datasets: the Datasets filter
    above the table and each run's Datasets panel show them, and Columns > Dataset brings the column back.
    """
    return [f"metrics.`{name}`" for name in metrics] + [f"params.`{name}`" for name in SWEPT_PARAMS]


def view_state(metrics: Sequence[str]) -> dict[str, Any]:
    """The part of the runs page's state the view sets; the page fills the rest with its defaults.

    ``metrics`` are :func:`headline_metrics`: negative ELBO, NLL, FID; the parallel-coordinates chart sets the
    swept params against the NLL.
    """
    return {
        "selectedColumns": view_columns(metrics),
        "compareRunSections": chart_sections(),
        "compareRunCharts": chart_cards(metrics, SWEPT_PARAMS, nll_metric=metrics[1]),
    }


def ui_state_tested(version: str | None = None) -> bool:
    """Whether ``version`` (the installed MLflow's by default) is the release the view's formats were checked on."""
    major_minor = ".".join((version or mlflow.__version__).split(".")[:2])
    return major_minor == TESTED_MLFLOW


@functools.cache
def _warn_untested_once(version: str) -> None:
    # Once per process: a sweep opens the experiment for every trial.
    log.warning(
        "MLflow %s is not the release vaelab's UI view was tested with (%s.x): the experiment gets no saved view; "
        "its runs open at the plain address (pip install 'mlflow==%s.*' for the view)",
        version,
        TESTED_MLFLOW,
        TESTED_MLFLOW,
    )


def configure_experiment_view(client: MlflowClient, experiment_id: str, metrics: Sequence[str]) -> None:
    """Tag the experiment as model training and give it the training-runs view showing ``metrics``; writes
    only what differs (so the view follows the metric names of the latest run's settings).

    A store that refuses the tags (a server without write access to experiments) gets a warning: the
    view is a convenience, and the training that asked for the experiment goes on. So does an MLflow release
    other than ``TESTED_MLFLOW``, whose page may read the tags differently or not at all.
    """
    if not ui_state_tested():
        _warn_untested_once(mlflow.__version__)
        return
    try:
        tags = with_retries(lambda: client.get_experiment(experiment_id)).tags
        for key, value in _missing_tags(tags, metrics).items():
            with_retries(partial(client.set_experiment_tag, experiment_id, key, value))
    except MlflowException as err:
        reason = redact_url(first_line(err))
        log.warning("could not set the MLflow UI view of experiment %s: %s", experiment_id, reason)


def _missing_tags(tags: Mapping[str, str], metrics: Sequence[str]) -> dict[str, str]:
    missing = {}
    if tags.get(KIND_TAG) != TRAINING_KIND:
        missing[KIND_TAG] = TRAINING_KIND
    saved = _saved_view(tags.get(VIEW_TAG))
    if saved is None or saved.get("name") != VIEW_NAME or _state_of(saved) != view_state(metrics):
        created = saved.get("createdAt") if saved else None
        missing[VIEW_TAG] = _view_envelope(created if isinstance(created, int) else None, metrics)
    return missing


def _view_envelope(created_ms: int | None, metrics: Sequence[str]) -> str:
    now = int(time.time() * 1000)
    # The page's own writer deflates `state`; its reader takes plain JSON as well, which stays readable in the tag.
    return json.dumps({"name": VIEW_NAME, "createdAt": created_ms or now, "updatedAt": now, "state": json.dumps(view_state(metrics))})


def _saved_view(value: str | None) -> dict[str, Any] | None:
    try:
        saved = json.loads(value) if value else None
    except ValueError:
        return None
    return saved if isinstance(saved, dict) else None


def _state_of(saved: Mapping[str, Any]) -> Any:
    try:
        return json.loads(saved.get("state") or "null")
    except (TypeError, ValueError):
        return None  # deflated or broken: rewritten with ours
