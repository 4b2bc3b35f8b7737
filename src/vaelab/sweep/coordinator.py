"""Optuna sweeps over the ``train.*`` keys in ``sweep.space``: one study, K workers, one MLflow parent run.

This module runs the study: the coordinator (:func:`run_sweep`), the worker loop (:func:`run_worker`) and
the ``vaelab sweep`` command (:func:`main`, also run by ``python -m vaelab.sweep``). A trial itself is
:class:`vaelab.sweep.objective.Objective`; storages and studies are opened by :mod:`vaelab.sweep.storage`;
:mod:`vaelab.sweep.report` writes the results.

``sweep.n_trials`` counts COMPLETE and PRUNED trials in total, so a resumed study runs only the missing
ones; diverged (FAIL) trials are replaced, up to ``2 * n_trials`` of them. The budget is exact with any
number of workers: a trial only runs if it is among the first ``n_trials`` trials of the study that are not
FAIL, counted in trial-number order once it exists (see :func:`_within_budget`). A trial created in the same
instant as another for the last slot is therefore failed at once, with fail_reason "not run: ...", and
trains nothing.

Storage: ``--storage``, else ``$VAELAB_OPTUNA_STORAGE``, else ``sweep.storage``, else the journal file
``sweeps/optuna.journal``. A value with ``://`` is an SQLAlchemy URL, anything else a journal file path.
The default is a journal file, not ``sqlite:///sweeps/optuna.db``: Optuna's JournalFileBackend takes a
lock file and waits for it, so several local workers write safely, while SQLite under concurrent writers
fails with "database is locked" (Optuna advises against SQLite for parallel optimisation); an
``sqlite://`` URL is therefore accepted for one worker only. A trial left RUNNING by a dead worker process
on this machine is marked FAIL when a worker next looks.

Memory: every Keras ``fit`` leaves graphs behind that TensorFlow does not free, so a process that trains trial
after trial grows by each one. Trials therefore run in worker processes (one per ``--workers``, also for a
single worker) that exit after ``sweep.trials_per_process`` trials and are replaced by fresh ones until the
study is done. The default, 4, weighs the two costs: a process grows by 26-39 MB a trial, so by some 120 MB
before it is replaced, while each fresh one pays seconds of TensorFlow start-up (bench/objective_cost.json).
The processed data is read from its shards by each process, a few rows at a time, so no process holds a copy
of it; the study's pruning, heartbeats, retries and MLflow parent run are in the storage and the tracking
store, which every process opens anew. ``trials_per_process: null`` keeps one
process throughout (with one worker, the coordinator's own).

Several machines: run the same command on each, sharing one PostgreSQL database through the environment
(which keeps the password out of ``ps``; it never reaches MLflow or the logs either)::

    VAELAB_OPTUNA_STORAGE=postgresql://user:password@dbhost/optuna vaelab sweep --workers 2

They share the study, its MLflow parent run and the trial budget. Workers send a heartbeat every 10 s; the
trial of a worker that died is marked FAIL after 30 s of silence and retried once with the same parameters.
Each machine writes ``sweeps/<study>/`` when its workers finish; the last one has the whole study.

Importing this module loads Optuna but neither TensorFlow nor MLflow: those load when a trial runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TypedDict, Unpack

import optuna
import yaml
from optuna.trial import TrialState

from vaelab import logs
from vaelab.cli_common import add_config_arguments, config_from_args, run_guarded
from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, TrainingError, VaelabError, first_line
from vaelab.sweep.objective import Objective
from vaelab.sweep.promote import record_settings
from vaelab.sweep.report import FAIL_REASON_ATTR, PARENT_RUN_ATTR, SURPLUS_ATTR, log_finished_trial, objective_metrics
from vaelab.sweep.scores import require_classifier
from vaelab.sweep.storage import (
    DEFAULT_STORAGE,
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    STORAGE_ENV,
    SWEEPS_DIR,
    WORKER_ATTR,
    fail_abandoned_trials,
    is_sqlite,
    open_artifact_store,
    open_storage,
    open_study,
    prunes,
    resolve_artifact_folder,
    resolve_storage,
    uses_heartbeats,
    worker_id,
)
from vaelab.tracking.redact import redact_url

log = logging.getLogger(__name__)

# A worker process exits with this when it ran sweep.trials_per_process trials and the study wants more.
RECYCLE_EXIT = 3
MAX_FAILED_PER_TRIAL = 2  # a study stops after 2 * n_trials failed trials: the space is broken


class WorkerOptions(TypedDict):
    """The keyword arguments of :func:`run_worker` that every worker of one sweep shares."""

    study_name: str
    n_trials: int
    deadline: float | None
    heartbeat_interval: int
    grace_period: int
    out_dir: Path


class SurplusTrial(Exception):
    """A trial created when ``n_trials`` earlier trials that are not FAIL already fill the budget."""


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
    max_trials: int | None = None,
    out_dir: Path = SWEEPS_DIR,
) -> bool:
    """Run trials until the study has ``n_trials`` COMPLETE or PRUNED ones, or ``deadline`` (epoch seconds) passes.

    With ``max_trials``, stop after running that many; return True if it stopped for that reason (the study may
    want more: a fresh process should take over), False when the study or its time is done. Each trial's
    pictures go to the artifact folder of ``out_dir`` (:func:`~vaelab.sweep.storage.resolve_artifact_folder`).
    """
    from vaelab.data.processed import load_splits

    storage = open_storage(storage_spec, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = open_study(config, storage, study_name, worker_index)
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    objective = Objective(
        config,
        load_splits(config.paths.processed),
        parent_run_id=parent_run_id,
        study_name=study_name,
        artifact_store=open_artifact_store(resolve_artifact_folder(out_dir)),
    )
    heartbeat = uses_heartbeats(storage_spec)
    # A new model per trial means new tf.functions each time; TensorFlow's retracing warning is expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    ran = 0
    while (step := _next_step(study, n_trials, deadline, heartbeat)) != "stop":
        if step == "wait":
            time.sleep(min(5.0, heartbeat_interval))
            continue
        if max_trials is not None and ran >= max_trials:
            return True
        study.optimize(
            _within_budget(objective, n_trials),
            n_trials=1,
            catch=(TrainingError, SurplusTrial),
            callbacks=[partial(log_finished_trial, metrics=objective_metrics(config))],
        )
        ran += 1
    return False


def _next_step(study: optuna.Study, n_trials: int, deadline: float | None, heartbeat: bool) -> str:
    """Whether to "run" a trial, "wait" for other workers' running trials (one may be abandoned) or "stop".

    "run" is a guess made from counts that another worker can change before this one's trial exists;
    :func:`_within_budget` settles it once the trial is there. The guess keeps such clashes rare.
    """
    fail_abandoned_trials(study, heartbeat)
    trials = study.get_trials(deepcopy=False)
    states = Counter(trial.state for trial in trials)
    finished = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
    if finished >= n_trials:
        return "stop"
    if deadline is not None and time.time() >= deadline:
        log.info("sweep.timeout_minutes reached: no new trials (%d of %d finished)", finished, n_trials)
        return "stop"
    # A surplus trial never trained, so it says nothing about the search space.
    failed = sum(trial.state == TrialState.FAIL and not trial.user_attrs.get(SURPLUS_ATTR) for trial in trials)
    if failed >= MAX_FAILED_PER_TRIAL * n_trials:
        log.warning("stopping after %d failed trials (fail_reason in trials.csv); narrow sweep.space", failed)
        return "stop"
    # A WAITING trial (a retry) holds a slot already: Optuna's ask() takes it rather than create a new one.
    if states[TrialState.WAITING] or finished + states[TrialState.RUNNING] < n_trials:
        return "run"
    return "wait"


def _within_budget(objective, n_trials: int):
    """``objective`` for trials that are among the first ``n_trials`` not FAIL, in trial-number order.

    COMPLETE, PRUNED, RUNNING and WAITING trials hold a slot; FAIL ones (diverged, abandoned, surplus) do
    not, and FAIL is final. The storage numbers trials one at a time (the journal under its lock file, a
    database with the study row locked FOR UPDATE), so once this trial exists every lower-numbered trial is
    visible and none can appear later. Hence exact: of the trials that passed this check and still hold a
    slot, the highest-numbered one saw all the others holding theirs when it checked, and it passed only if
    they were fewer than ``n_trials``. Of several trials created at once for the last slot, the lowest-
    numbered runs and the others are failed here, before they train or log anything.
    """

    def run(trial: optuna.Trial) -> float:
        # First, so that if this worker dies now, its trial is found abandoned like any other.
        trial.set_user_attr(WORKER_ATTR, worker_id())
        holders = sum(
            1 for other in trial.study.get_trials(deepcopy=False) if other.number < trial.number and other.state != TrialState.FAIL
        )
        if holders >= n_trials:
            reason = f"not run: earlier trials already hold all sweep.n_trials={n_trials} slots"
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            raise SurplusTrial(reason)
        try:
            return objective(trial)
        except (optuna.TrialPruned, TrainingError):
            raise  # pruning is no failure, and a TrainingError records its own reason
        except Exception as err:
            # This error ends the worker (Optuna re-raises it); trials.csv should still say what the trial died of.
            _record_fail_reason(trial, f"{type(err).__name__}: {redact_url(first_line(err, 300))}")
            raise

    return run


def _record_fail_reason(trial: optuna.Trial, reason: str) -> None:
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except Exception as err:  # noqa: BLE001 - the storage may be what failed; the original error is the one to raise
        log.warning("trial %d: could not record its fail_reason (%s): %s", trial.number, first_line(err), reason)


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
    from vaelab.sweep import report
    from vaelab.tracking import runs

    study_name = study_name or config.sweep.study_name
    n_trials = n_trials or config.sweep.n_trials
    spec = resolve_storage(storage, config)
    _check_workers(workers, spec)
    require_classifier(config)
    started = time.time()
    timeout = config.sweep.timeout_minutes
    options: WorkerOptions = {
        "study_name": study_name,
        "n_trials": n_trials,
        "deadline": started + 60 * timeout if timeout else None,
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
        "out_dir": Path(out_dir),
    }
    storage_object = open_storage(spec, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = open_study(config, storage_object, study_name)
    record_settings(study, config)
    missing = n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    log.info("study %r in %s: %d more trials wanted", study_name, redact_url(spec), max(missing, 0))
    if len(config.sweep.objectives) > 1:
        log.info("Optuna cannot prune a study of several objectives: every trial runs all sweep.epochs=%d", config.sweep.epochs)
    elif not prunes(config):
        only = config.sweep.objectives[0]
        log.info("%s is known only after a trial's last epoch, so none is pruned: each runs all sweep.epochs=%d", only, config.sweep.epochs)

    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_id and not runs.run_exists(parent_id):
        log.warning("the study's MLflow parent run %s is not in this tracking store; starting a new one", parent_id)
        parent_id = None
    tags = {"optuna.study": study_name, "optuna.storage": spec}
    with runs.start_run(config, run_id=parent_id, name=f"sweep-{study_name}", tags=tags) as parent:
        if parent_id is None:
            study.set_user_attr(PARENT_RUN_ATTR, parent.info.run_id)
        if missing > 0 and workers == 1 and config.sweep.trials_per_process is None:
            run_worker(config, spec, **options)
        elif missing > 0:
            _run_worker_processes(config, spec, min(workers, missing), **options)
        folder = Path(out_dir) / study_name
        duration = time.time() - started
        summary = report.write_report(study, folder, config, n_trials=n_trials, storage=redact_url(spec), duration_seconds=duration)
        report.log_report(summary, folder, config)
    if "choice_problem" in summary:
        raise ConfigError(summary["choice_problem"])
    if summary["best_value"] is None:
        raise TrainingError(f"no trial of study {study_name!r} completed ({summary['trials']}); see {folder / 'trials.csv'}")
    return summary


def winner_line(summary: dict, config: Config) -> str:
    """The winner as ``vaelab sweep`` prints it at the end: its number, its values, and with several objectives the rule."""
    values = summary.get("best_values") or {objective_metrics(config)[0]: summary["best_value"]}
    digits = ".4f" if len(values) == 1 else ".6g"  # .6g shows a parameter count as the integer it is
    shown = ", ".join(f"{metric}={value:{digits}}" for metric, value in values.items())
    if "pareto_front" in summary:
        head = f"Chosen trial {summary['best_trial']} ({summary['choice']}; the front has {len(summary['pareto_front'])} trials)"
    else:
        head = f"Best trial {summary['best_trial']}"
    return f"{head}: {shown}."


def _check_workers(workers: int, spec: str) -> None:
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1; received {workers}")
    if workers > 1 and is_sqlite(spec):
        raise ConfigError(
            f"{workers} workers cannot share the SQLite storage {spec} (SQLite fails with 'database is locked' under "
            "concurrent writers); use a journal file path (the default, sweeps/optuna.journal) or a postgresql:// URL"
        )


def _run_worker_processes(config: Config, spec: str, workers: int, **options: Unpack[WorkerOptions]) -> None:
    from vaelab.tracking.store import tracking_uri

    # The storage URL travels in the environment, not on the command line where `ps` shows its password.
    env = {**os.environ, STORAGE_ENV: spec, "MLFLOW_TRACKING_URI": tracking_uri()}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="vaelab-sweep-") as folder:
        params = Path(folder) / "params.yaml"
        params.write_text(yaml.safe_dump(with_overrides(config, {"sweep.storage": None}).model_dump(mode="json")))
        command = [sys.executable, "-m", "vaelab.sweep", "--worker", "--params", str(params)]
        command += ["--study", options["study_name"], "--n-trials", str(options["n_trials"])]
        command += ["--heartbeat-interval", str(options["heartbeat_interval"])]
        command += ["--grace-period", str(options["grace_period"])]
        # Absolute, so that the pictures land beside the study's results whatever the worker's folder.
        command += ["--out-dir", str(options["out_dir"].resolve())]
        if options["deadline"] is not None:
            command += ["--deadline", repr(options["deadline"])]
        if config.sweep.trials_per_process is not None:
            command += ["--max-trials", str(config.sweep.trials_per_process)]
        log.info("starting %d worker processes", workers)
        processes = [subprocess.Popen([*command, "--worker-index", str(index)], env=env) for index in range(workers)]
        try:
            # Polling reaps each worker as it exits, so the others see its pid gone and can fail its trials.
            while any(process.poll() is None for process in processes):
                time.sleep(0.5)
                for index, process in enumerate(processes):
                    if process.poll() == RECYCLE_EXIT:  # its trials are done and the study wants more: a fresh process
                        processes[index] = subprocess.Popen([*command, "--worker-index", str(index)], env=env)
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
    parser = argparse.ArgumentParser(prog="vaelab sweep", description="An Optuna study over sweep.space, tracked in MLflow.")
    add_config_arguments(parser)
    parser.add_argument("--workers", type=_positive_int, default=1, help="worker processes on this machine (default: 1)")
    parser.add_argument("--n-trials", type=_positive_int, help="finished trials wanted in total (default: sweep.n_trials)")
    parser.add_argument("--study", help="study name (default: sweep.study_name); a study of the same name resumes")
    parser.add_argument("--storage", help=f"journal file or database URL (default: ${STORAGE_ENV}, sweep.storage, {DEFAULT_STORAGE})")
    parser.add_argument(
        "--promote",
        action="store_true",
        help="then train the winner with the pipeline's epochs as DVC experiment STUDY-trialN (see vaelab promote --help)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="prefix log lines with level and module")
    # For the worker processes the coordinator starts; tests shorten the heartbeat with the last two.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat-interval", type=_positive_int, default=HEARTBEAT_INTERVAL, help=argparse.SUPPRESS)
    parser.add_argument("--grace-period", type=_positive_int, default=GRACE_PERIOD, help=argparse.SUPPRESS)
    parser.add_argument("--max-trials", type=_positive_int, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=SWEEPS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    line = logs.VERBOSE_FORMAT if args.verbose else logs.PLAIN_FORMAT
    # Worker processes start as `python -m vaelab.sweep`, not through vaelab.cli: quiet TensorFlow here too.
    logs.configure(format=(f"[worker {args.worker_index}] " if args.worker else "") + line)
    timing = {"heartbeat_interval": args.heartbeat_interval, "grace_period": args.grace_period}

    exit_codes: list[int] = []

    def action() -> None:
        config = config_from_args(args)
        if args.worker:
            study_name, n_trials = args.study or config.sweep.study_name, args.n_trials or config.sweep.n_trials
            storage = resolve_storage(args.storage, config)
            more = run_worker(
                config,
                storage,
                study_name=study_name,
                n_trials=n_trials,
                worker_index=args.worker_index,
                deadline=args.deadline,
                max_trials=args.max_trials,
                out_dir=args.out_dir,
                **timing,
            )
            if more:
                exit_codes.append(RECYCLE_EXIT)
            return
        summary = run_sweep(config, workers=args.workers, storage=args.storage, study_name=args.study, n_trials=args.n_trials, **timing)
        best = winner_line(summary, config)
        if not args.promote:
            print(f"{best} Train it through the pipeline with:\n  {summary['command']}\nor: vaelab promote {summary['study']}")
            return
        from vaelab.sweep.promote import describe, promote_study

        print(best, flush=True)
        print(describe(promote_study(config, resolve_storage(args.storage, config), summary["study"])))

    sys.exit(run_guarded(action) or (exit_codes[0] if exit_codes else 0))


if __name__ == "__main__":
    main()
