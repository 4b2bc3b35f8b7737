"""A run's life: start or resume it, give it params and tags, log metrics, artifacts and datasets, end it.

A new run gets the flattened config as params, git and DVC tags and the tags naming the process that holds it
(see :mod:`.orphans`). URL passwords are redacted in every param, tag and text artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, SupportsFloat

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vaelab.config.schema import Config
from vaelab.errors import VaelabError, first_line
from vaelab.retries import is_transient
from vaelab.tracking.experiments import open_experiment
from vaelab.tracking.orphans import owner_tags
from vaelab.tracking.redact import redact_url
from vaelab.tracking.store import (
    StoreError,
    check_server_answers,
    check_sqlite_writable,
    fluent_store,
    store_errors,
    tracking_uri,
    unreachable,
    with_retries,
)

if TYPE_CHECKING:
    from vaelab.data.processed import Splits

log = logging.getLogger(__name__)
# Four INFO lines per training (started, no GPU, stopping, stopped) that tell a user nothing; its warnings stay.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)

GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own name, which its UI shows on the run page

_TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".csv", ".txt", ".toml", ".cfg", ".ini", ".lock"}


def run_name(config: Config, short_id: str) -> str:
    """A name readable in the MLflow UI, e.g. ``mnist-z2-r1000-a1b2c3``."""
    return f"{config.data.dataset}-z{config.train.z_dim}-r{config.train.r_loss_factor:g}-{short_id}"


@contextmanager
def start_run(
    config: Config,
    *,
    run_id: str | None = None,
    name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Start a run in ``config.base.experiment`` (or resume ``run_id``); end it FINISHED, or FAILED on any exception.

    A new run gets the flattened config as params and git/DVC tags. A resumed run gets neither:
    MLflow refuses to change a logged param, and the tags describe the code that trained it.
    ``system_metrics`` samples CPU, memory and disk into the run (MLflow's ``system/*`` metrics) while it is open.
    A store that cannot be reached or written ends in a :class:`StoreError` naming it.
    """
    uri = tracking_uri()
    with fluent_store(uri):
        with store_errors(uri):
            check_server_answers(uri)
            check_sqlite_writable(uri)
            run = _open_run(config, uri, run_id, name, nested, tags, system_metrics)
        try:
            yield run
        except BaseException as err:
            # BaseException: a Ctrl-C (KeyboardInterrupt) must not leave the run RUNNING forever.
            _end_failed(uri)
            if isinstance(err, Exception) and is_transient(err):
                raise StoreError(unreachable(uri, err)) from err
            raise
        with store_errors(uri):
            mlflow.end_run(status="FINISHED")


def _end_failed(uri: str) -> None:
    """Mark the active run FAILED; if the store is gone too, say so instead of hiding the first error."""
    try:
        mlflow.end_run(status="FAILED")
    except Exception as err:  # noqa: BLE001 - the original exception is the one to report; this one only explains the run
        log.warning("could not mark the MLflow run FAILED in %s: %s", redact_url(uri), redact_url(first_line(err)))


def _open_run(config: Config, uri: str, run_id: str | None, name: str | None, nested: bool, tags, system_metrics: bool) -> mlflow.ActiveRun:
    if run_id is not None:
        run = _resume(run_id, uri, nested, system_metrics)
    else:
        experiment_id = open_experiment(config.base.experiment, uri, config)
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=name,
            nested=nested,
            tags=_new_run_tags(tags),
            log_system_metrics=system_metrics,
        )
    try:
        if run_id is not None:
            # This process holds the run now; the one that opened it before may be dead (see orphans.py).
            mlflow.set_tags({**{key: redact_url(str(value)) for key, value in (tags or {}).items()}, **owner_tags()})
            return run
        if name is None:
            mlflow.set_tag("mlflow.runName", run_name(config, _dvc_exp_name() or run.info.run_id[:6]))
        mlflow.log_params(_param_strings(config.flat()))
        return run
    except BaseException:
        _end_failed(uri)
        raise


def _resume(run_id: str, uri: str, nested: bool, system_metrics: bool) -> mlflow.ActiveRun:
    try:
        return mlflow.start_run(run_id=run_id, nested=nested, log_system_metrics=system_metrics)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise VaelabError(
            f"MLflow run {run_id} not found in {redact_url(uri)}; set MLFLOW_TRACKING_URI to the store the "
            "train stage used, or re-run `dvc repro train`"
        ) from None


def _new_run_tags(extra: Mapping[str, Any] | None) -> dict[str, str]:
    tags = {**_git_tags(), **owner_tags()}
    exp_name = _dvc_exp_name()
    if exp_name:
        tags["dvc.exp_name"] = exp_name
    tags.update({key: str(value) for key, value in (extra or {}).items()})
    return {key: redact_url(value) for key, value in tags.items()}


def _dvc_exp_name() -> str | None:
    """The DVC experiment being run (``dvc exp run``, its queue and ``--temp``); None for a plain ``dvc repro``."""
    return os.environ.get("DVC_EXP_NAME") or None


def _git_tags() -> dict[str, str]:
    """MLflow's ``mlflow.source.git.commit`` and ``git.dirty`` (tracked files changed) of the current directory.

    MLflow finds the commit itself only from the entry script's folder, which is not the project's for
    ``python -m vaelab.cli`` of an installed package or for a run started from a notebook or test; none outside git.
    """
    try:
        commit, changes = (
            subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()
            for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {GIT_COMMIT_TAG: commit, "git.dirty": "true" if changes else "false"}


def _param_strings(flat: Mapping[str, Any]) -> dict[str, str]:
    return {key: redact_url(_param_string(value)) for key, value in flat.items()}


def _param_string(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_param_string(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run (a sweep trial's state, its failure reason), URL passwords redacted."""
    values = {key: redact_url(str(value)) for key, value in tags.items()}
    with_retries(lambda: mlflow.set_tags(values))


def set_description(text: str) -> None:
    """The active run's description, shown at the top of its page in the MLflow UI."""
    set_tags({"mlflow.note.content": text})


def log_params(params: Mapping[str, Any]) -> None:
    """Log params on the active run, written like the config's own (``null``, ``a,b``), URL passwords redacted."""
    values = _param_strings(params)
    with_retries(lambda: mlflow.log_params(values))


def log_metrics(metrics: Mapping[str, SupportsFloat], step: int | None = None) -> None:
    """Log each value as a float (NumPy scalars included) at ``step``."""
    values = {key: float(value) for key, value in metrics.items()}
    with_retries(lambda: mlflow.log_metrics(values, step=step))


def log_artifact(path: Path | str, artifact_path: str | None = None) -> None:
    """Upload one file; a text file holding a URL with a password is uploaded with the password redacted."""
    path = Path(path)
    text = _text_or_none(path)
    if text is None or redact_url(text) == text:
        with_retries(lambda: mlflow.log_artifact(str(path), artifact_path))
        return
    with tempfile.TemporaryDirectory() as folder:
        redacted = Path(folder) / path.name
        redacted.write_text(redact_url(text), encoding="utf-8")
        with_retries(lambda: mlflow.log_artifact(str(redacted), artifact_path))


def _text_or_none(path: Path) -> str | None:
    # Config-like files (params.yaml may hold a database URL) are checked; images and models are not.
    if path.suffix.lower() not in _TEXT_SUFFIXES or path.stat().st_size > 10_000_000:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def log_dataset_manifest(manifest_path: Path | str) -> None:
    """Tag the run with the manifest's SHA-256 (which files trained it) and keep the manifest itself."""
    manifest_path = Path(manifest_path)
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    mlflow.set_tag("data.manifest_sha256", digest)
    log_artifact(manifest_path, "data")


def log_datasets(splits: Splits, processed_dir: Path | str, manifest_path: Path | str | None) -> None:
    """The train, validation and test splits as the run's MLflow dataset inputs (see :mod:`.datasets`)."""
    from vaelab.tracking.datasets import split_datasets

    datasets = split_datasets(splits, processed_dir, manifest_path)
    with_retries(lambda: mlflow.log_inputs(list(datasets.values()), contexts=list(datasets), tags_list=[None] * len(datasets)))


def find_run(client: MlflowClient, run_id: str) -> Run | None:
    """Run ``run_id`` of ``client``'s store, or None if the store has no such run (other failures raise)."""
    try:
        return with_retries(lambda: client.get_run(run_id))
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None


def run_exists(run_id: str) -> bool:
    """Whether ``run_id`` is a live (not deleted) run in the current tracking store."""
    run = find_run(MlflowClient(tracking_uri()), run_id)
    return run is not None and run.info.lifecycle_stage != "deleted"
