"""Everything that talks to MLflow: run start and resume, per-epoch metrics, artifacts and the model.

No module outside ``vaelab.tracking`` imports ``mlflow``. The store is ``MLFLOW_TRACKING_URI`` when set (a
server or a database), else ``mlflow.db`` in the project root with artifacts in ``mlartifacts/`` beside it.
The project root is the DVC repository's, also for experiments that DVC runs in temporary copies of it
(``dvc exp run --temp``, the queue), so every run of the project lands in one store.
Credentials in URLs are replaced by ``***`` in everything this module logs or writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import keras
import mlflow
import numpy as np
import requests
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vaelab.config import Config
from vaelab.errors import DataError, VaelabError, first_line
from vaelab.io import write_json
from vaelab.tracking.orphans import fail_orphaned_runs, owner_tags

log = logging.getLogger(__name__)
# Four INFO lines per training (started, no GPU, stopping, stopped) that tell a user nothing; its warnings stay.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)

DEFAULT_DB = Path("mlflow.db")
ARTIFACTS_DIR = "mlartifacts"
MODEL_NAME = "model"

_T = TypeVar("_T")
# scheme://user:password@host -> the password group is everything up to the last "@" of the authority.
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@:\s]*:)[^/?#\s]*@")
_TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".csv", ".txt", ".toml", ".cfg", ".ini", ".lock"}
# RetryError: MLflow's client already retried a 5xx (or 429) answer until its own budget ran out.
_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.RetryError,
)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
# MLflow's codes for a store that fails underneath a valid request (SQLite locked or read-only, a database down).
_STORE_FAILURE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "IO_ERROR"}


def project_root() -> Path:
    """The folder of the default store: ``DVC_ROOT`` under DVC, else the current directory.

    DVC sets ``DVC_ROOT`` for every stage command. For an experiment run in a temporary copy of the
    repository (``.dvc/tmp/exps/...``, by ``--temp`` or a queue worker) it names the original repository,
    not the copy, which DVC deletes afterwards together with anything written inside it.
    """
    return Path(os.environ.get("DVC_ROOT") or ".").resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an SQLite file ``mlflow.db`` in :func:`project_root`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DEFAULT_DB}"


def redact_url(url: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``url`` with ``***``."""
    return _CREDENTIALS.sub(r"\g<head>***@", str(url))


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
    exported = "MLFLOW_TRACKING_URI" in os.environ
    mlflow.set_tracking_uri(uri)
    try:
        with _store_errors(uri):
            _check_server_answers(uri)
            _check_sqlite_writable(uri)
            run = _open_run(config, uri, run_id, name, nested, tags, system_metrics)
        try:
            yield run
        except BaseException as err:
            # BaseException: a Ctrl-C (KeyboardInterrupt) must not leave the run RUNNING forever.
            _end_failed(uri)
            if isinstance(err, Exception) and _is_transient(err):
                raise StoreError(_unreachable(uri, err)) from err
            raise
        with _store_errors(uri):
            mlflow.end_run(status="FINISHED")
    finally:
        if not exported:
            # set_tracking_uri also exports the URI to the environment; left there, a later run started
            # from another folder (a test's tmp_path) would keep writing to this folder's store.
            os.environ.pop("MLFLOW_TRACKING_URI", None)


class StoreError(VaelabError):
    """The tracking store cannot be reached or written: the stage stops with one line naming the store."""


@contextmanager
def _store_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as err:
        # A run that does not exist, a param that differs: MLflow's answers about the request, not the store.
        if not _is_transient(err) and err.error_code not in _STORE_FAILURE_CODES:
            raise
        raise StoreError(_unreachable(uri, err)) from None
    except _TRANSIENT as err:
        raise StoreError(_unreachable(uri, err)) from None


def _check_server_answers(uri: str, attempts: int = 3, first_delay: float = 1.0) -> None:
    """Fail within seconds when a tracking server is down at the start, before any work.

    MLflow's client would retry every request for minutes with back-off, which suits a server restarting
    in the middle of a training (see :func:`with_retries`) but not one that is not there at all. Any HTTP
    answer counts as reachable: a proxy in front of the server may not serve /health.
    """
    if not uri.startswith(("http://", "https://")):
        return
    for attempt in range(attempts):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=(3, 10))
            return
        except requests.exceptions.RequestException as err:
            if attempt == attempts - 1:
                raise ConnectionError(str(err)) from None
            time.sleep(first_delay * 2**attempt)


def _check_sqlite_writable(uri: str) -> None:
    """An SQLite store whose folder or file cannot be written fails here, in one line.

    Left to MLflow, a read-only database logs a full SQLAlchemy traceback, and a database that cannot be
    created is retried for minutes. SQLite also writes a journal beside the file, so the folder must take files.
    """
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri.removeprefix("sqlite:///"))
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=database.parent, prefix=".mlflow-write-check-"):
            pass
        if database.exists():
            database.open("r+b").close()
    except OSError as err:
        raise StoreError(_unreachable(uri, err)) from None


def _unreachable(uri: str, err: BaseException) -> str:
    text = str(err).strip()
    # requests nests the socket's own words ("[Errno 111] Connection refused") three wrappers deep.
    errno = _ERRNO.search(text)
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror
    elif errno:
        reason = errno.group(0).rstrip(": ")
    else:
        reason = redact_url(text.splitlines()[0][:300]) if text else type(err).__name__
    remedy = "start the server (make server)" if uri.startswith(("http://", "https://")) else "make it writable"
    return (
        f"MLflow tracking store {redact_url(uri)} cannot be reached or written ({reason}); {remedy} or point "
        "MLFLOW_TRACKING_URI at another store (unset, runs go to mlflow.db in the project root)"
    )


def _end_failed(uri: str) -> None:
    """Mark the active run FAILED; if the store is gone too, say so instead of hiding the first error."""
    try:
        mlflow.end_run(status="FAILED")
    except Exception as err:  # the original exception is the one to report; this one only explains the run
        log.warning("could not mark the MLflow run FAILED in %s: %s", redact_url(uri), redact_url(str(err).splitlines()[0][:200]))


def _open_run(
    config: Config, uri: str, run_id: str | None, name: str | None, nested: bool, tags, system_metrics: bool
) -> mlflow.ActiveRun:
    if run_id is not None:
        run = _resume(run_id, uri, nested, system_metrics)
    else:
        experiment_id = _experiment_id(config.base.experiment, uri, config)
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=name, nested=nested, tags=_new_run_tags(tags),
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


def log_dataset_manifest(manifest_path: Path | str) -> None:
    """Tag the run with the manifest's SHA-256 (which files trained it) and keep the manifest itself."""
    manifest_path = Path(manifest_path)
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    mlflow.set_tag("data.manifest_sha256", digest)
    log_artifact(manifest_path, "data")


def log_datasets(splits, processed_dir: Path | str, manifest_path: Path | str | None) -> None:
    """The train, validation and test splits as the run's MLflow dataset inputs (see :mod:`.datasets`)."""
    from vaelab.tracking.datasets import split_datasets

    datasets = split_datasets(splits, processed_dir, manifest_path)
    with_retries(lambda: mlflow.log_inputs(list(datasets.values()), contexts=list(datasets), tags_list=[None] * len(datasets)))


def set_description(text: str) -> None:
    """The active run's description, shown at the top of its page in the MLflow UI."""
    set_tags({"mlflow.note.content": text})


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every numeric value of an epoch's logs with ``step = epoch + 1``, in one request per epoch.

    Steps are 1-based epoch numbers, so a training resumed at epoch 4 continues with step 5 in the
    same run. The run is the one active when training starts, unless ``run_id`` names another.
    """

    def __init__(self, run_id: str | None = None):
        super().__init__()
        self.run_id = run_id

    def on_train_begin(self, logs=None):
        if self.run_id is None:
            active = mlflow.active_run()
            if active is None:
                raise VaelabError("MlflowEpochLogger needs an active run; train inside vaelab.tracking.start_run(...)")
            self.run_id = active.info.run_id

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in (logs or {}).items() if _is_number(value)}
        if "learning_rate" not in values and self.model is not None and getattr(self.model, "optimizer", None):
            values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, epoch + 1) for key, value in sorted(values.items())]
        client = MlflowClient()
        with_retries(lambda: client.log_batch(self.run_id, metrics=metrics))


def log_missing_epochs(run_id: str, history: list[dict[str, Any]]) -> None:
    """Log the rows of a training history (``{"epoch": n, key: value}``) whose epoch the run lacks as step ``n``.

    Steps already in the run are left alone, so re-running this never duplicates a point.
    """
    client = MlflowClient(tracking_uri())
    logged = {metric.step for metric in with_retries(lambda: client.get_metric_history(run_id, "loss"))}
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), timestamp, int(row["epoch"]))
        for row in history
        if int(row["epoch"]) not in logged
        for key, value in sorted(row.items())
        if key != "epoch" and _is_number(value)
    ]
    if metrics:
        log.info("logging %d epochs the interrupted run had checkpointed but not logged", len({m.step for m in metrics}))
        with_retries(lambda: client.log_batch(run_id, metrics=metrics))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
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


def log_artifacts(directory: Path | str, artifact_path: str | None = None) -> None:
    """Upload a folder's files, keeping its layout, each redacted as by :func:`log_artifact`."""
    directory = Path(directory)
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        parts = [artifact_path, *file.relative_to(directory).parent.parts]
        log_artifact(file, "/".join(part for part in parts if part) or None)


def log_keras_model(model: keras.Model, example_images: np.ndarray) -> str:
    """Log ``model`` as an MLflow model whose pyfunc ``predict(images)`` returns reconstructions; return its URI.

    The model is exported as a TensorFlow SavedModel, so serving it needs neither vaelab nor its custom
    layers. The signature (float32 images of the example's shape, any batch size) comes from the examples.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    examples = np.asarray(example_images, dtype="float32")
    outputs = keras.ops.convert_to_numpy(model(examples, training=False))
    signature = infer_signature(examples, outputs)
    # Keras' exporter prints a page of endpoint details to stdout; keep it out of the training output.
    with contextlib.redirect_stdout(io.StringIO()):
        info = mlflow.keras.log_model(
            model,
            name=MODEL_NAME,
            save_exported_model=True,
            signature=signature,
            # Listing the requirements skips MLflow's inference, which reloads the model in a subprocess.
            pip_requirements=_serving_requirements(),
        )
    return info.model_uri


def write_run_info(path: Path | str, run_id: str) -> None:
    """Leave the run's coordinates for the evaluate stage (``{"run_id", "experiment_id", "tracking_uri"}``)."""
    run = with_retries(lambda: MlflowClient(tracking_uri()).get_run(run_id))
    write_json(path, {"run_id": run_id, "experiment_id": run.info.experiment_id, "tracking_uri": redact_url(tracking_uri())})


def read_run_info(path: Path | str) -> str:
    """The run id that the train stage wrote to ``path``; DataError if the file is missing or broken."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        run_id = info["run_id"]
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the train stage first (dvc repro train)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: no run_id in it ({type(err).__name__}: {err}); run the train stage again") from None
    if not isinstance(run_id, str) or not run_id:
        raise DataError(f"{path}: run_id must be a non-empty string, found {run_id!r}; run the train stage again")
    recorded = info.get("tracking_uri")
    if recorded and recorded != redact_url(tracking_uri()):
        log.warning("%s was written for tracking URI %s but the current one is %s", path, recorded, redact_url(tracking_uri()))
    return run_id


def with_retries(call: Callable[[], _T], attempts: int = 4, first_delay: float = 0.5) -> _T:
    """``call()``, retried with doubling delays when the tracking server cannot be reached or keeps answering 5xx.

    This comes on top of MLflow's own retries of each request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    7 by default with doubling back-off), which already ride out a server restart of a minute or so.
    """
    for attempt in range(1, attempts):
        try:
            return call()
        except Exception as err:
            if not _is_transient(err):
                raise
            delay = first_delay * 2 ** (attempt - 1)
            log.warning("MLflow request failed (%s); retry %d of %d in %.1f s", redact_url(str(err)), attempt, attempts - 1, delay)
            time.sleep(delay)
    return call()


def _is_transient(err: BaseException | None) -> bool:
    # MLflow's REST client wraps a refused connection in a plain MlflowException, so follow the chain.
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, _TRANSIENT):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _experiment_id(name: str, uri: str, config: Config | None = None) -> str:
    """The experiment's id, created if missing, with the UI view that shows its training runs (see :mod:`.ui`);
    the view's metric columns are ``config``'s headline metrics (params.yaml's defaults if None)."""
    from vaelab.tracking.ui import configure_experiment_view, headline_metrics  # ui imports this module

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
            return with_retries(lambda: client.create_experiment(name, artifact_location=_artifact_location(uri, name)))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another process (a parallel sweep) won the race
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        log.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """``mlartifacts/<experiment>/`` beside an SQLite database; a server or other store keeps its own default."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)
    return (database.resolve().parent / ARTIFACTS_DIR / folder).as_uri()


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
    if _dvc_exp_name():
        tags["dvc.exp_name"] = _dvc_exp_name()
    tags.update({key: str(value) for key, value in (extra or {}).items()})
    return {key: redact_url(value) for key, value in tags.items()}


def _dvc_exp_name() -> str | None:
    """The DVC experiment being run (``dvc exp run``, its queue and ``--temp``); None for a plain ``dvc repro``."""
    return os.environ.get("DVC_EXP_NAME") or None


def _git_tags() -> dict[str, str]:
    """``git.commit`` and ``git.dirty`` (tracked files changed) of the current directory; none outside git."""
    try:
        commit, changes = (
            subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()
            for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "git.dirty": "true" if changes else "false"}


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


def _text_or_none(path: Path) -> str | None:
    # Config-like files (params.yaml may hold a database URL) are checked; images and models are not.
    if path.suffix.lower() not in _TEXT_SUFFIXES or path.stat().st_size > 10_000_000:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def _is_number(value: Any) -> bool:
    # Keras hands over Python floats, NumPy scalars or 0-d tensors; anything else is not a metric.
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _serving_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}"]
    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            return [*requirements, f"{distribution}=={version(distribution)}"]
        except PackageNotFoundError:
            continue
    return requirements


# --- sweeps ---


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run (a sweep trial's state, its failure reason), URL passwords redacted."""
    values = {key: redact_url(str(value)) for key, value in tags.items()}
    with_retries(lambda: mlflow.set_tags(values))


def log_params(params: Mapping[str, Any]) -> None:
    """Log params on the active run, written like the config's own (``null``, ``a,b``), URL passwords redacted."""
    values = _param_strings(params)
    with_retries(lambda: mlflow.log_params(values))


def run_exists(run_id: str) -> bool:
    """Whether ``run_id`` is a live (not deleted) run in the current tracking store."""
    client = MlflowClient(tracking_uri())
    try:
        run = with_retries(lambda: client.get_run(run_id))
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return False
    return run.info.lifecycle_stage != "deleted"


# --- comparison ---


def experiment_runs(experiment: str) -> list[dict[str, Any]]:
    """The live runs of ``experiment`` in the current store, oldest first, as plain data for tables.

    Each is ``{"run_id", "run_name", "status", "start_time" (ms), "params", "metrics", "tags"}``, with
    the latest value of each metric. VaelabError naming the experiments there if ``experiment`` is not.
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
    runs, token = [], None
    while True:
        page = with_retries(
            lambda: client.search_runs(
                [found.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000, page_token=token
            )
        )
        runs += [
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "start_time": run.info.start_time,
                "params": dict(run.data.params),
                "metrics": dict(run.data.metrics),
                "tags": dict(run.data.tags),
            }
            for run in page
        ]
        token = page.token
        if not token:
            return runs
