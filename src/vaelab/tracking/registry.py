"""Every evaluated model becomes a version of one registered model; the alias ``best`` names the lowest test NLL.

The registered model is named after the MLflow experiment and the dataset, binarized or not
(:func:`registered_model_name`). Each version carries, as tags, the test NLL it was judged by and that
metric's name (which states K and the data, see vaelab.metric_names), the run name and the NLL estimate's
settings, so anyone can check in the MLflow UI why ``best`` points where it does. Only versions judged by
the same metric as the newest one are compared: an NLL with another K is not alike. Load the winner anywhere with
``mlflow.pyfunc.load_model("models:/<name>@best")``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

from mlflow.entities import LoggedModel, LoggedModelStatus, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from vaelab.config.schema import Config
from vaelab.errors import VaelabError, first_line
from vaelab.metric_names import data_label, evaluate_nll_metric
from vaelab.tracking.export import MODEL_NAME
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import tracking_uri, with_retries

log = logging.getLogger(__name__)

BEST_ALIAS = "best"
NLL_TAG = "test_nll_nats"  # the version tag holding the NLL the version was judged by
METRIC_TAG = "nll_metric"  # ... and the name of that metric, e.g. test_nll_k100_binarized_nats
RUN_NAME_TAG = "run_name"
BINARIZED_SUFFIX = "-binarized"
DESCRIPTION = (
    f"Every evaluated vaelab model. Alias {BEST_ALIAS!r}: the lowest tag {NLL_TAG} among the versions whose "
    f"tag {METRIC_TAG} equals the newest version's."
)
# Enough for any realistic number of evaluations finishing together; see point_best_alias.
MAX_ALIAS_ROUNDS = 10
# What a store says when it has no model registry: an unknown registry scheme (FEATURE_DISABLED), the
# refused file store (INVALID_PARAMETER_VALUE), a server without the registry endpoints.
_NO_REGISTRY = {"FEATURE_DISABLED", "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "INVALID_PARAMETER_VALUE"}


@dataclass(frozen=True)
class Registration:
    """The version one evaluation added and where the alias ``best`` points afterwards."""

    name: str
    version: int
    nll: float
    best_version: int | None  # None: no version has a finite NLL yet
    best_nll: float | None
    previous_best_version: int | None
    previous_best_nll: float | None

    def summary(self) -> str:
        """One log line, e.g. ``registered vaelab-mnist version 3 (test NLL 150.30); alias best stays on version 2 ...``."""
        head = f"registered {self.name} version {self.version} (test NLL {self.nll:.2f})"
        return f"{head}; {self._alias_summary()}"

    def _alias_summary(self) -> str:
        if self.best_version is None:
            return f"alias {BEST_ALIAS} not set: no version has a finite test NLL"
        if self.best_version == self.previous_best_version:
            return f"alias {BEST_ALIAS} stays on version {self.best_version} (test NLL {self.best_nll:.2f} <= {self.nll:.2f})"
        if self.previous_best_nll is None:
            return f"alias {BEST_ALIAS} -> version {self.best_version} (test NLL {self.best_nll:.2f}, the first)"
        return (
            f"alias {BEST_ALIAS} -> version {self.best_version} "
            f"(test NLL {self.best_nll:.2f} < {self.previous_best_nll:.2f} of version {self.previous_best_version})"
        )


def registered_model_name(experiment: str, dataset: str, binarize: str = "none") -> str:
    """``<experiment>-<dataset>``, or the experiment alone when it already ends with ``-<dataset>``; then
    ``-binarized`` for models of binarized data, whose likelihoods are not comparable with grayscale ones.

    ``vaelab-mnist`` + ``mnist`` -> ``vaelab-mnist``; ``vaelab`` + ``fashion_mnist`` -> ``vaelab-fashion_mnist``;
    ``vaelab-mnist`` + ``mnist``, binarized -> ``vaelab-mnist-binarized``.
    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``-``: MLflow refuses ``/`` and ``:``,
    and a quote would break the filter strings this module searches versions with.
    """
    experiment, dataset = _name_part(experiment), _name_part(dataset)
    name = experiment if experiment == dataset or experiment.endswith(f"-{dataset}") else f"{experiment}-{dataset}"
    return name if data_label(binarize) == "grayscale" else name + BINARIZED_SUFFIX


def register_evaluated_model(run_id: str, config: Config, metrics: dict[str, float]) -> Registration:
    """Register the model that run ``run_id`` logged as a new version, then point ``best`` at the lowest NLL.

    Call it inside ``runs.start_run``: MLflow's SQL registry looks up a ``models:/<model_id>`` source
    through the process-wide tracking URI, which start_run sets. VaelabError if the store has no registry
    or the run logged no model.
    """
    uri = tracking_uri()
    client = MlflowClient(uri)
    name = registered_model_name(config.base.experiment, config.data.dataset, config.data.binarize)
    _ensure_registered_model(client, name, uri)
    run = with_retries(lambda: client.get_run(run_id))
    model = _logged_model(client, run)
    metric = evaluate_nll_metric(config)
    nll = float(metrics[metric])
    version = _create_version(client, name, model, run, _version_tags(run, config, metric, nll))
    _link_logged_model(client, model, name, version)
    before, after, scores = point_best_alias(client, name, metric)
    after_nll = None if after is None else scores.get(after)
    before_nll = None if before is None else scores.get(before)
    registration = Registration(name, version, nll, after, after_nll, before, before_nll)
    log.info("%s", registration.summary())
    return registration


def point_best_alias(client: MlflowClient, name: str, metric: str) -> tuple[int | None, int | None, dict[int, float]]:
    """Move ``best`` to the lowest-NLL version of ``name`` judged by ``metric`` unless it is already on one;
    (before, after, NLLs of those versions).

    Two evaluations may finish at once against one store, and the registry has no compare-and-set. So
    each caller registers its version (NLL tag included) first, then repeats "read the alias, list every
    version, move the alias if a listed version has a strictly lower NLL" until a round moves nothing.
    Why the alias ends on the minimum: after the last write of the alias, its writer reads the alias and
    lists once more, so it sees every version registered before that write and would have written again
    were one better; every version registered after it belongs to an evaluation that read the final alias
    and likewise found it no worse. Between two writes the alias may briefly name a worse version (a
    writer whose list predates a better version); that writer's next round puts it back.
    """
    before = current = _alias_target(client, name)
    scores: dict[int, float] = {}
    for _ in range(MAX_ALIAS_ROUNDS):
        scores = recorded_nlls(client, name, metric)
        best = _argmin(scores)
        if best is None or (current in scores and scores[current] <= scores[best]):
            return before, current, scores
        try:
            with_retries(partial(client.set_registered_model_alias, name, BEST_ALIAS, str(best)))
        except Exception as err:
            if not _lost_alias_race(err):
                raise
            # Another evaluation created the alias row between our read and our write; the next round re-reads.
        current = _alias_target(client, name)
    log.warning(
        "alias %s of %s kept changing for %d rounds (evaluations finishing together); left at version %s",
        BEST_ALIAS,
        name,
        MAX_ALIAS_ROUNDS,
        current,
    )
    return before, current, scores


def _lost_alias_race(err: BaseException | None) -> bool:
    """True when setting the alias failed because a concurrent writer inserted it first.

    The SQL registry sets an alias as "delete, then insert"; two writers at once collide on the alias's unique
    key (SQLite: "UNIQUE constraint failed", PostgreSQL: "duplicate key value"), wrapped or not by MLflow.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if type(err).__name__ == "IntegrityError" or "UNIQUE constraint failed" in text or "duplicate key value" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def recorded_nlls(client: MlflowClient, name: str, metric: str) -> dict[int, float]:
    """Version number -> the finite NLL in its tag, for every live version of ``name`` judged by ``metric``
    (others are no candidates)."""
    scores, token = {}, None
    while True:
        page = with_retries(partial(client.search_model_versions, f"name = '{name}'", page_token=token))
        for version in page:
            nll = _finite_float(version.tags.get(NLL_TAG))
            if nll is not None and version.tags.get(METRIC_TAG) == metric:
                scores[int(version.version)] = nll
        token = page.token
        if not token:
            return scores


def _name_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "vaelab"


def _ensure_registered_model(client: MlflowClient, name: str, uri: str) -> None:
    # Creating (rather than looking up first) is the one call that settles a race with another worker:
    # exactly one of them creates, the other is told it exists.
    try:
        with_retries(lambda: client.create_registered_model(name, description=DESCRIPTION))
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return
        if err.error_code not in _NO_REGISTRY:
            raise
        registry = os.environ.get("MLFLOW_REGISTRY_URI") or uri
        reason = first_line(err).split(". ")[0]
        raise VaelabError(
            f"cannot register the model in {redact_url(registry)} ({reason}); point MLFLOW_TRACKING_URI "
            "(and MLFLOW_REGISTRY_URI, if set) at a database such as sqlite:///mlflow.db or a server backed by one"
        ) from None


def _logged_model(client: MlflowClient, run: Run) -> LoggedModel:
    """The newest finished model the run logged: a training resumed after logging its model logs it again."""
    run_id = run.info.run_id
    # Not "status = 'READY'" in the filter: MLflow's SQL store keeps the status as a number, and that
    # filter silently matches nothing.
    found = with_retries(
        lambda: client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
            order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        )
    )
    ready = [model for model in found if model.status == LoggedModelStatus.READY]
    if not ready:
        raise VaelabError(f"MLflow run {run_id} has no finished logged model {MODEL_NAME!r}; re-run `dvc repro train`")
    return ready[0]


def _version_tags(run: Run, config: Config, metric: str, nll: float) -> dict[str, str]:
    # repr: the shortest text that reads back as exactly this float, so the alias compares what was measured.
    # The estimate's settings are kept because NLLs from different K or test subsets are not alike.
    return {
        NLL_TAG: repr(nll),
        METRIC_TAG: metric,
        RUN_NAME_TAG: run.info.run_name or run.info.run_id,
        "evaluate.nll_samples": str(config.evaluate.nll_samples),
        "evaluate.nll_images": "all" if config.evaluate.nll_images is None else str(config.evaluate.nll_images),
    }


def _create_version(client: MlflowClient, name: str, model: LoggedModel, run: Run, tags: dict[str, str]) -> int:
    # The tags go in with the version itself, so no concurrent alias check can see it without its NLL.
    created = with_retries(
        lambda: client.create_model_version(
            name, source=f"models:/{model.model_id}", run_id=run.info.run_id, tags=tags, model_id=model.model_id
        )
    )
    return int(created.version)


def _link_logged_model(client: MlflowClient, model: LoggedModel, name: str, version: int) -> None:
    # The logged model's page in the UI lists its registered versions from this tag. A tracking server
    # writes it when a version is created; a database used directly (sqlite:///...) does not.
    current = with_retries(lambda: client.get_logged_model(model.model_id)).tags.get(MLFLOW_MODEL_VERSIONS)
    links: list[dict[str, Any]] = json.loads(current) if current else []
    if any(link.get("name") == name and str(link.get("version")) == str(version) for link in links):
        return
    links.append({"name": name, "version": version})
    with_retries(lambda: client.set_logged_model_tags(model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)}))


def _alias_target(client: MlflowClient, name: str) -> int | None:
    target = with_retries(lambda: client.get_registered_model(name)).aliases.get(BEST_ALIAS)
    return None if target is None else int(target)


def _argmin(scores: dict[int, float]) -> int | None:
    # Ties go to the older version. (A tie never moves a set alias: point_best_alias needs a strictly lower NLL.)
    return min(scores, key=lambda version: (scores[version], version)) if scores else None


def _finite_float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None
