"""Optuna sweeps over the ``train.*`` keys in ``sweep.space``: one study, K workers, one MLflow parent run.

Each trial trains ``sweep.epochs`` epochs on the first ``sweep.max_train`` training images and is scored by
the validation negative ELBO in nats under a Bernoulli decoder (comparable across ``r_loss_factor``; lower
is better). ``sweep.n_trials`` counts COMPLETE and PRUNED trials in total, so a resumed study runs only
the missing ones; diverged (FAIL) trials are replaced, up to ``2 * n_trials`` of them. Two workers that
look at the same instant may together start one trial too many.

Storage: ``--storage``, else ``$VAELAB_OPTUNA_STORAGE``, else ``sweep.storage``, else the journal file
``sweeps/optuna.journal``. A value with ``://`` is an SQLAlchemy URL, anything else a journal file path.
The default is a journal file, not ``sqlite:///sweeps/optuna.db``: Optuna's JournalFileBackend takes a
lock file and waits for it, so several local workers write safely, while SQLite under concurrent writers
fails with "database is locked" (Optuna advises against SQLite for parallel optimisation); an
``sqlite://`` URL is therefore accepted for one worker only. A trial left RUNNING by a dead worker process
on this machine is marked FAIL when a worker next looks.

Several machines: run the same command on each, sharing one PostgreSQL database through the environment
(which keeps the password out of ``ps``; it never reaches MLflow or the logs either)::

    VAELAB_OPTUNA_STORAGE=postgresql://user:password@dbhost/optuna vaelab sweep --workers 2

They share the study, its MLflow parent run and the trial budget. Workers send a heartbeat every 10 s; the
trial of a worker that died is marked FAIL after 30 s of silence and retried once with the same parameters.
Each machine writes ``sweeps/<study>/`` when its workers finish; the last one has the whole study.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from vaelab.config import Config
from vaelab.errors import ConfigError, DataError, TrainingError, VaelabError
from vaelab.io import ensure_dir
from vaelab.sweep_report import FAIL_REASON_ATTR, OBJECTIVE_METRIC, log_finished_trial

log = logging.getLogger(__name__)

SWEEPS_DIR = Path("sweeps")
DEFAULT_STORAGE = "sweeps/optuna.journal"
STORAGE_ENV = "VAELAB_OPTUNA_STORAGE"
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attr: the MLflow run every worker's trials nest under
WORKER_ATTR = "worker"  # trial user attr "host:pid", to recognise trials of dead local workers
STATE_TAG = "optuna.state"
HEARTBEAT_INTERVAL = 10  # seconds
GRACE_PERIOD = 30  # seconds without a heartbeat before a running trial counts as abandoned
MAX_FAILED_PER_TRIAL = 2  # a study stops after 2 * n_trials failed trials: the space is broken


def resolve_storage(override: str | None, config: Config) -> str:
    """``--storage``, else ``$VAELAB_OPTUNA_STORAGE``, else ``sweep.storage``, else ``sweeps/optuna.journal``."""
    return override or os.environ.get(STORAGE_ENV) or config.sweep.storage or DEFAULT_STORAGE


def open_storage(spec: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD):
    """A JournalStorage for a file path; an RDBStorage for a URL, with heartbeats and one retry unless SQLite."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from sqlalchemy.exc import SQLAlchemyError

    from vaelab.tracking import redact_url

    if not _is_url(spec):
        ensure_dir(Path(spec).parent)
        return JournalStorage(JournalFileBackend(spec))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            if _is_sqlite(spec):
                return RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
            return RDBStorage(
                _with_installed_driver(spec),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except (ImportError, ValueError, SQLAlchemyError) as err:
        reason = redact_url((str(err).strip() or type(err).__name__).splitlines()[0])
        raise VaelabError(
            f"cannot open the Optuna storage {redact_url(spec)}: {reason}; check --storage, ${STORAGE_ENV} or sweep.storage"
        ) from None


def make_sampler(config: Config, seed: int) -> optuna.samplers.BaseSampler:
    if config.sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(config: Config) -> optuna.pruners.BasePruner:
    if config.sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if config.sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.sweep.epochs)
    return optuna.pruners.NopPruner()


def open_study(config: Config, storage, study_name: str, worker_index: int = 0) -> optuna.Study:
    """Create the study, or load the one of that name, with this config's sampler and pruner."""
    # log_finished_trial reports each trial in one line; Optuna would add its own, with tracebacks for failures.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="minimize", pruner=make_pruner(config), load_if_exists=True
    )
    # Seeded from base.seed and also from the trials so far and the worker: with base.seed alone, a resumed
    # study or a second worker would propose the very parameters already tried.
    entropy = [config.base.seed, len(study.get_trials(deepcopy=False)), worker_index]
    study.sampler = make_sampler(config, int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return study


class Objective:
    """One trial: sample the space, train like the train stage on the capped data, return the validation -ELBO.

    The splits are held in memory for all trials of a worker: the first ``sweep.max_train`` training
    images and the whole validation split.
    """

    def __init__(self, config: Config, splits, *, parent_run_id: str | None = None, study_name: str | None = None):
        if len(splits.x_val) == 0:
            raise DataError("the validation split is empty, so trials cannot be scored; raise data.val_fraction")
        self.config = config
        self.splits = training_subset(splits, config.sweep.max_train)
        self.parent_run_id = parent_run_id
        self.study_name = study_name or config.sweep.study_name
        self._check_space()

    def suggest(self, trial: optuna.Trial) -> dict[str, int | float]:
        """One value per ``sweep.space`` key; integer train settings (z_dim, batch_size) stay integers."""
        values: dict[str, int | float] = {}
        for key, bounds in self.config.sweep.space.items():
            if _is_integer_setting(self.config, key):
                values[key] = trial.suggest_int(key, *_integer_bounds(key, bounds), log=bounds.log)
            else:
                values[key] = trial.suggest_float(key, bounds.low, bounds.high, log=bounds.log)
        return values

    def trial_config(self, values: dict[str, int | float]) -> Config:
        overrides = {f"train.{key}": value for key, value in values.items()}
        return self.config.with_overrides({**overrides, "train.epochs": self.config.sweep.epochs})

    def __call__(self, trial: optuna.Trial) -> float:
        import keras

        from vaelab import tracking

        trial.set_user_attr(WORKER_ATTR, worker_id())
        config = self.trial_config(self.suggest(trial))
        tags = {"optuna.study": self.study_name, STATE_TAG: "RUNNING"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        pruned = None
        try:
            with tracking.start_run(config, name=trial_run_name(trial.number, config), nested=True, tags=tags) as run:
                trial.set_user_attr("mlflow_run_id", run.info.run_id)
                tracking.log_params({"optuna.trial_number": trial.number})
                try:
                    value = self._train(trial, config)
                except optuna.TrialPruned as err:
                    pruned = err  # raised once the run has ended, so MLflow records it FINISHED, not FAILED
                    tracking.set_tags({STATE_TAG: "PRUNED"})
                except TrainingError as err:
                    trial.set_user_attr(FAIL_REASON_ATTR, str(err))
                    tracking.set_tags({STATE_TAG: "FAIL", "optuna.fail_reason": str(err)})
                    raise
                else:
                    tracking.log_metrics({f"final_{OBJECTIVE_METRIC}": value})
                    tracking.set_tags({STATE_TAG: "COMPLETE"})
        finally:
            # Each trial builds a new model; without this, graphs and weights of every earlier one stay alive.
            keras.backend.clear_session()
            gc.collect()
        if pruned is not None:
            raise pruned
        return value

    def _train(self, trial: optuna.Trial, config: Config) -> float:
        from vaelab import tracking
        from vaelab.training import train

        reporter = _validation_reporter(trial, self.splits.x_val, config.evaluate.batch_size, config.base.seed)
        train(config, self.splits, callbacks=[reporter, tracking.MlflowEpochLogger()], verbose=0)
        if reporter.failure:
            raise TrainingError(reporter.failure)
        if reporter.pruned_after is not None:
            raise optuna.TrialPruned(f"after epoch {reporter.pruned_after}: {OBJECTIVE_METRIC}={reporter.last_value:.4g}")
        return reporter.last_value

    def _check_space(self) -> None:
        """Both ends of every range must be valid settings, so a bad range fails now rather than mid-study."""
        for key, bounds in self.config.sweep.space.items():
            ends = _integer_bounds(key, bounds) if _is_integer_setting(self.config, key) else (bounds.low, bounds.high)
            for end in ends:
                try:
                    self.config.with_overrides({f"train.{key}": end})
                except ConfigError as err:
                    message = f"sweep.space.{key}: the range end {end:g} is not a valid train.{key} ({err})"
                    raise ConfigError(message) from None


def training_subset(splits, max_train: int | None):
    """``splits`` with the first ``max_train`` training images (all if None); train and validation read into memory."""
    n = len(splits.x_train) if max_train is None else min(max_train, len(splits.x_train))
    return replace(
        splits,
        x_train=np.ascontiguousarray(splits.x_train[:n]),
        y_train=np.ascontiguousarray(splits.y_train[:n]),
        x_val=np.ascontiguousarray(splits.x_val),
        y_val=np.ascontiguousarray(splits.y_val),
    )


def trial_run_name(number: int, config: Config) -> str:
    """The child run's name, e.g. ``trial-3-z8-r1000-lr0.0005``."""
    train = config.train
    return f"trial-{number}-z{train.z_dim}-r{train.r_loss_factor:.4g}-lr{train.learning_rate:.2g}"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _validation_reporter(trial: optuna.Trial, x_val: np.ndarray, batch_size: int, seed: int):
    """A Keras callback that reports the validation -ELBO to ``trial`` after each epoch and stops a pruned trial."""
    import keras  # here, not at the top: `vaelab sweep --help` should not load TensorFlow

    from vaelab.evaluation import mean_negative_elbo

    class ValidationReporter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.last_value = math.nan
            self.pruned_after: int | None = None
            self.failure: str | None = None

        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training:  # training's NaN guard stopped it, and train() raises the error
                return
            value = mean_negative_elbo(self.model, x_val, batch_size, seed)
            if not math.isfinite(value):
                self.failure = f"{OBJECTIVE_METRIC} became {value} after epoch {epoch + 1}"
                self.model.stop_training = True
                return
            self.last_value = value
            if logs is not None:
                logs[OBJECTIVE_METRIC] = value  # the same dict goes on to MlflowEpochLogger
            trial.report(value, epoch + 1)  # steps are 1-based epochs, like the MLflow metric steps
            if trial.should_prune():
                self.pruned_after = epoch + 1
                self.model.stop_training = True

    return ValidationReporter()


def run_worker(
    config: Config,
    storage_spec: str,
    *,
    study_name: str,
    n_trials: int,
    worker_index: int = 0,
    deadline: float | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> None:
    """Run trials until the study has ``n_trials`` COMPLETE or PRUNED ones, or ``deadline`` (epoch seconds) passes."""
    from vaelab.data.processed import load_splits

    storage = open_storage(storage_spec, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = open_study(config, storage, study_name, worker_index)
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    objective = Objective(config, load_splits(config.paths.processed), parent_run_id=parent_run_id, study_name=study_name)
    heartbeat = _is_url(storage_spec) and not _is_sqlite(storage_spec)
    # A new model per trial means new tf.functions each time; TensorFlow's retracing warning is expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    while (step := _next_step(study, n_trials, deadline, heartbeat)) != "stop":
        if step == "wait":
            time.sleep(min(5.0, heartbeat_interval))
            continue
        study.optimize(objective, n_trials=1, catch=(TrainingError,), callbacks=[log_finished_trial])


def _next_step(study: optuna.Study, n_trials: int, deadline: float | None, heartbeat: bool) -> str:
    """Whether to "run" a trial, "wait" for other workers' running trials (one may be abandoned) or "stop"."""
    _fail_abandoned_trials(study, heartbeat)
    states = Counter(trial.state for trial in study.get_trials(deepcopy=False))
    finished = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
    if finished >= n_trials:
        return "stop"
    if deadline is not None and time.time() >= deadline:
        log.info("sweep.timeout_minutes reached: no new trials (%d of %d finished)", finished, n_trials)
        return "stop"
    if states[TrialState.FAIL] >= MAX_FAILED_PER_TRIAL * n_trials:
        log.warning("stopping after %d failed trials (fail_reason in trials.csv); narrow sweep.space", states[TrialState.FAIL])
        return "stop"
    if states[TrialState.WAITING] or finished + states[TrialState.RUNNING] < n_trials:
        return "run"
    return "wait"


def _fail_abandoned_trials(study: optuna.Study, heartbeat: bool) -> None:
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # FAIL after the grace period, then the retry callback
        return
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner == host and pid.isdigit() and not _process_alive(int(pid)):
            log.warning("trial %d was left RUNNING by worker process %s, now gone; marking it FAIL", trial.number, pid)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def run_sweep(
    config: Config,
    *,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    out_dir: Path = SWEEPS_DIR,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> dict:
    """Run (or resume) the study with ``workers`` processes, write ``out_dir/<study>/`` and return its summary."""
    from vaelab import sweep_report, tracking

    study_name = study_name or config.sweep.study_name
    n_trials = n_trials or config.sweep.n_trials
    spec = resolve_storage(storage, config)
    _check_workers(workers, spec)
    started = time.time()
    timeout = config.sweep.timeout_minutes
    options = {
        "study_name": study_name,
        "n_trials": n_trials,
        "deadline": started + 60 * timeout if timeout else None,
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
    }
    storage_object = open_storage(spec, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = open_study(config, storage_object, study_name)
    missing = n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    log.info("study %r in %s: %d more trials wanted", study_name, tracking.redact_url(spec), max(missing, 0))

    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_id and not tracking.run_exists(parent_id):
        log.warning("the study's MLflow parent run %s is not in this tracking store; starting a new one", parent_id)
        parent_id = None
    tags = {"optuna.study": study_name, "optuna.storage": spec}
    with tracking.start_run(config, run_id=parent_id, name=f"sweep-{study_name}", tags=tags) as parent:
        if parent_id is None:
            study.set_user_attr(PARENT_RUN_ATTR, parent.info.run_id)
        if missing > 0 and workers == 1:
            run_worker(config, spec, **options)
        elif missing > 0:
            _run_worker_processes(config, spec, min(workers, missing), **options)
        folder = Path(out_dir) / study_name
        summary = sweep_report.write_report(
            study, folder, n_trials=n_trials, storage=tracking.redact_url(spec), duration_seconds=time.time() - started
        )
        sweep_report.log_report(summary, folder)
    if summary["best_value"] is None:
        raise TrainingError(f"no trial of study {study_name!r} completed ({summary['trials']}); see {folder / 'trials.csv'}")
    return summary


def _check_workers(workers: int, spec: str) -> None:
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1; received {workers}")
    if workers > 1 and _is_sqlite(spec):
        raise ConfigError(
            f"{workers} workers cannot share the SQLite storage {spec} (SQLite fails with 'database is locked' under "
            "concurrent writers); use a journal file path (the default, sweeps/optuna.journal) or a postgresql:// URL"
        )


def _run_worker_processes(config: Config, spec: str, workers: int, **options) -> None:
    from vaelab import tracking

    # The storage URL travels in the environment, not on the command line where `ps` shows its password.
    env = {**os.environ, STORAGE_ENV: spec, "MLFLOW_TRACKING_URI": tracking.tracking_uri()}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="vaelab-sweep-") as folder:
        params = Path(folder) / "params.yaml"
        params.write_text(yaml.safe_dump(config.with_overrides({"sweep.storage": None}).model_dump(mode="json")))
        command = [sys.executable, "-m", "vaelab.sweep", "--worker", "--params", str(params)]
        command += ["--study", options["study_name"], "--n-trials", str(options["n_trials"])]
        command += ["--heartbeat-interval", str(options["heartbeat_interval"])]
        command += ["--grace-period", str(options["grace_period"])]
        if options["deadline"] is not None:
            command += ["--deadline", repr(options["deadline"])]
        log.info("starting %d worker processes", workers)
        processes = [subprocess.Popen([*command, "--worker-index", str(index)], env=env) for index in range(workers)]
        try:
            # Polling reaps each worker as it exits, so the others see its pid gone and can fail its trials.
            while any(process.poll() is None for process in processes):
                time.sleep(0.5)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                process.wait()
    codes = [process.returncode for process in processes]
    if all(code != 0 for code in codes):
        raise VaelabError(f"all {workers} sweep workers failed (exit codes {codes}); see their messages above")
    if any(code != 0 for code in codes):
        log.warning("some sweep workers failed (exit codes %s); the others went on with the study", codes)


def _is_url(spec: str) -> bool:
    return "://" in spec


def _is_sqlite(spec: str) -> bool:
    return spec.startswith("sqlite")


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; vaelab installs psycopg2, so name it unless psycopg is there."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _is_integer_setting(config: Config, key: str) -> bool:
    value = getattr(config.train, key)
    return isinstance(value, int) and not isinstance(value, bool)


def _integer_bounds(key: str, bounds) -> tuple[int, int]:
    low, high = math.ceil(bounds.low), math.floor(bounds.high)
    if low > high:
        raise ConfigError(f"sweep.space.{key}: no integer in [{bounds.low:g}, {bounds.high:g}]; train.{key} is an integer")
    return low, high


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """``vaelab sweep [--params F] [--set K=V ...] [--workers K] [--n-trials N] [--study NAME] [--storage URL]``."""
    from vaelab.cli import add_config_arguments, config_from_args, run_guarded

    parser = argparse.ArgumentParser(prog="vaelab sweep", description="An Optuna study over sweep.space, tracked in MLflow.")
    add_config_arguments(parser)
    parser.add_argument("--workers", type=_positive_int, default=1, help="worker processes on this machine (default: 1)")
    parser.add_argument("--n-trials", type=_positive_int, help="finished trials wanted in total (default: sweep.n_trials)")
    parser.add_argument("--study", help="study name (default: sweep.study_name); a study of the same name resumes")
    parser.add_argument(
        "--storage", help=f"journal file or database URL (default: ${STORAGE_ENV}, sweep.storage, {DEFAULT_STORAGE})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="prefix log lines with level and module")
    # For the worker processes the coordinator starts; tests shorten the heartbeat with the last two.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat-interval", type=_positive_int, default=HEARTBEAT_INTERVAL, help=argparse.SUPPRESS)
    parser.add_argument("--grace-period", type=_positive_int, default=GRACE_PERIOD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    line = "%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s"
    logging.basicConfig(level=logging.INFO, format=(f"[worker {args.worker_index}] " if args.worker else "") + line)
    timing = {"heartbeat_interval": args.heartbeat_interval, "grace_period": args.grace_period}

    def action() -> None:
        config = config_from_args(args)
        if args.worker:
            study_name, n_trials = args.study or config.sweep.study_name, args.n_trials or config.sweep.n_trials
            storage = resolve_storage(args.storage, config)
            run_worker(config, storage, study_name=study_name, n_trials=n_trials, worker_index=args.worker_index,
                       deadline=args.deadline, **timing)
            return
        summary = run_sweep(config, workers=args.workers, storage=args.storage, study_name=args.study,
                            n_trials=args.n_trials, **timing)
        print(f"Best trial {summary['best_trial']}: {OBJECTIVE_METRIC}={summary['best_value']:.4f}. "
              f"Train it through the pipeline with:\n  {summary['command']}")

    sys.exit(run_guarded(action))


if __name__ == "__main__":
    main()
