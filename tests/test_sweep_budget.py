"""A study ends with exactly ``sweep.n_trials`` finished trials, however many workers claim its last slot at once.

Waiting for four workers to look at the same millisecond would take many studies, so these tests force it with
the real workers and storages: the test holds one trial RUNNING (as a fifth worker would) until the four workers
have filled the rest of the budget and sit idle, then frees that slot while the storage cannot create trials
(PostgreSQL: the study row is locked as Optuna locks it to number a new trial; journal file: Optuna's own lock
file is held). Every idle worker sees the free slot before any of them can create its trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from contextlib import contextmanager, suppress
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import TrialState
from sweep_helpers import mlflow_runs, study_in

from vaelab.sweep.report import SURPLUS_ATTR
from vaelab.sweep.storage import DEFAULT_STORAGE, WORKER_ATTR, open_storage, open_study, worker_id

pytestmark = pytest.mark.slow

N_TRIALS = 6
WORKERS = 4
# One epoch on 64 images: a trial costs little beyond TensorFlow's start-up, so the test is mostly the race.
CHEAP = {"sweep__epochs": 1, "sweep__max_train": 64}


def start_sweep(config, folder: Path, *options: str) -> subprocess.Popen:
    """``vaelab sweep --workers 4 --n-trials 6`` as a user starts it, output in ``folder/sweep.log``."""
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    command = [
        sys.executable,
        "-m",
        "vaelab.sweep",
        "--params",
        str(params),
        "--workers",
        str(WORKERS),
        "--n-trials",
        str(N_TRIALS),
        "--heartbeat-interval",
        "1",
        *options,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with (folder / "sweep.log").open("w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def hold_a_slot(study: optuna.Study) -> optuna.Trial:
    """A RUNNING trial owned by this (live) process, so the workers count it and do not fail it as abandoned."""
    with warnings.catch_warnings():
        # Optuna warns that heartbeats come with Study.optimize; this trial is held by hand, without one.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        held = study.ask()
    held.set_user_attr(WORKER_ATTR, worker_id())
    return held


def wait_until_idle(study: optuna.Study, held: optuna.Trial, sweeping: subprocess.Popen, folder: Path) -> None:
    """Until the workers have finished every trial but the held one: all four then poll, waiting for a slot."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert sweeping.poll() is None, (folder / "sweep.log").read_text()[-3000:]
        states = Counter(trial.state for trial in study.get_trials(deepcopy=False))
        finished = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
        if finished == N_TRIALS - 1 and states[TrialState.RUNNING] == 1 and not states[TrialState.WAITING]:
            assert study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0].number == held.number
            return
        time.sleep(0.2)
    raise AssertionError("the workers did not finish their trials within 600 s")


def worker_processes(sweeping: subprocess.Popen) -> list[psutil.Process]:
    workers = [child for child in psutil.Process(sweeping.pid).children() if "--worker" in child.cmdline()]
    assert len(workers) == WORKERS
    return workers


def finish(sweeping: subprocess.Popen, folder: Path) -> None:
    try:
        sweeping.wait(timeout=600)
    finally:
        if sweeping.poll() is None:  # stuck: end its workers too, which would otherwise outlive the test
            for worker in psutil.Process(sweeping.pid).children():
                worker.kill()
            sweeping.kill()
            sweeping.wait()
    assert sweeping.returncode == 0, (folder / "sweep.log").read_text()[-3000:]


def assert_exact_budget(trials: list[optuna.trial.FrozenTrial], held: optuna.Trial, folder: Path, uri: str) -> None:
    """Exactly N_TRIALS finished, the trials that lost the race failed untrained, one child run per trial that
    trained (all but those and the held one)."""
    states = [(trial.number, trial.state.name, trial.user_attrs.get("fail_reason")) for trial in trials]
    assert sum(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials) == N_TRIALS, states
    assert not [trial for trial in trials if not trial.state.is_finished()], states
    surplus = [trial for trial in trials if trial.user_attrs.get(SURPLUS_ATTR)]
    assert len(surplus) >= WORKERS - 1, states  # the race did happen: four trials were created for one slot
    assert {trial.state for trial in surplus} == {TrialState.FAIL}
    assert all(trial.user_attrs["fail_reason"].startswith("not run: ") and not trial.params for trial in surplus)
    summary = json.loads((folder / "sweeps" / "tiny" / "summary.json").read_text())
    assert summary["surplus_trials"] == len(surplus)
    untrained = {held.number, *(trial.number for trial in surplus)}
    trained = [trial.number for trial in trials if trial.number not in untrained]
    parents, children = mlflow_runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(child.data.params["optuna.trial_number"]) for child in children) == trained


def race_for_the_last_slot(study, held, sweeping: subprocess.Popen, folder: Path, creation_blocked, all_waiting):
    """Free the held slot while the workers are stopped, then let them all see it before any can create a trial.

    ``creation_blocked()`` is a context manager during which the storage cannot create trials;
    ``all_waiting()`` returns once the resumed workers are all waiting to create theirs.
    """
    wait_until_idle(study, held, sweeping, folder)
    # Stopped, no worker can take the slot between the test freeing it and blocking trial creation.
    workers = worker_processes(sweeping)
    for worker in workers:
        worker.suspend()
    try:
        study.tell(held, state=TrialState.FAIL)
        time.sleep(1.5)  # past every worker's 1 s poll, so each one looks again as soon as it resumes
        with creation_blocked():
            for worker in workers:
                worker.resume()
            all_waiting()
    finally:
        for worker in workers:  # whatever failed above, no worker is left stopped
            with suppress(psutil.NoSuchProcess):
                worker.resume()


def test_four_journal_workers_claiming_the_last_slot_at_once_finish_exactly_n_trials(sweep_config, sweep_workdir, mlflow_uri):
    config = sweep_config(**CHEAP)
    study = open_study(config, open_storage(DEFAULT_STORAGE), "tiny")
    held = hold_a_slot(study)

    @contextmanager
    def journal_locked():
        lock = JournalFileSymlinkLock(str(sweep_workdir / DEFAULT_STORAGE))  # the lock every journal write takes
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def all_waiting() -> None:
        time.sleep(5)  # a resumed worker looks at once and, seeing the free slot, waits for the lock within ms

    sweeping = start_sweep(config, sweep_workdir)
    try:
        race_for_the_last_slot(study, held, sweeping, sweep_workdir, journal_locked, all_waiting)
    finally:
        finish(sweeping, sweep_workdir)

    assert_exact_budget(study_in().get_trials(), held, sweep_workdir, mlflow_uri)


@pytest.mark.postgres
def test_four_postgres_workers_claiming_the_last_slot_at_once_finish_exactly_n_trials(
    sweep_config, sweep_workdir, mlflow_uri, sweep_database, scratch_databases
):
    import psycopg2

    config = sweep_config(sweep__storage=sweep_database, **CHEAP)
    study = open_study(config, open_storage(sweep_database), "tiny")
    held = hold_a_slot(study)
    name = sweep_database.rpartition("/")[2]
    waiting = []

    @contextmanager
    def study_row_locked():
        locker = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name)
        try:
            with locker.cursor() as cursor:
                # The row Optuna locks FOR UPDATE to number a new trial; NO KEY UPDATE leaves other writes alone.
                cursor.execute("SELECT study_id FROM studies WHERE study_name = 'tiny' FOR NO KEY UPDATE")
            yield
        finally:
            locker.rollback()
            locker.close()

    def all_waiting() -> None:
        deadline = time.monotonic() + 60
        while True:
            with scratch_databases.admin.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (name,))
                count = cursor.fetchone()[0]
            if count >= WORKERS or time.monotonic() > deadline:
                waiting.append(count)
                return
            time.sleep(0.1)

    # A grace period of 10 s: four TensorFlow processes on two cores can starve a heartbeat thread for seconds.
    sweeping = start_sweep(config, sweep_workdir, "--grace-period", "10")
    try:
        race_for_the_last_slot(study, held, sweeping, sweep_workdir, study_row_locked, all_waiting)
    finally:
        finish(sweeping, sweep_workdir)

    assert waiting == [WORKERS]  # all four had seen the free slot and were creating a trial at once
    assert_exact_budget(study_in(sweep_database).get_trials(), held, sweep_workdir, mlflow_uri)
