"""vaelab.sweep on a real PostgreSQL server (127.0.0.1:5432, user postgres, trust auth): shared studies,
heartbeats and retries. Each test creates its own database (sweep_database) and drops it afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from mlflow_helpers import experiment_runs
from optuna.trial import TrialState
from sweep_helpers import EXPERIMENT, PASSWORD, mlflow_runs, study_in

from vaelab.sweep import coordinator
from vaelab.sweep.report import FAIL_REASON_ATTR, SURPLUS_ATTR
from vaelab.sweep.storage import open_storage

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def all_mlflow_strings(uri: str) -> list[str]:
    """Every param and tag value of every run in the test experiment."""
    client = MlflowClient(uri)
    runs = experiment_runs(client, EXPERIMENT)
    return [value for run in runs for value in (*run.data.params.values(), *run.data.tags.values())]


def test_two_workers_share_one_study_and_the_password_stays_out(sweep_config, sweep_workdir, mlflow_uri, sweep_database, capfd):
    summary = coordinator.run_sweep(sweep_config(sweep__storage=sweep_database), workers=2, n_trials=3)

    trials = study_in(sweep_database).get_trials()
    numbers = [trial.number for trial in trials]
    assert numbers == list(range(len(numbers)))  # no number handed out twice
    assert summary["trials"]["COMPLETE"] == 3
    assert len({trial.user_attrs["worker"] for trial in trials}) == 2
    parents, children = mlflow_runs(mlflow_uri)
    trained = [trial for trial in trials if not trial.user_attrs.get(SURPLUS_ATTR)]
    assert len(parents) == 1 and len(children) == len(trained)
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parents[0].info.run_id}

    strings = all_mlflow_strings(mlflow_uri)
    assert not [value for value in strings if PASSWORD in value]
    assert parents[0].data.params["sweep.storage"] == sweep_database.replace(PASSWORD, "***")
    assert parents[0].data.tags["optuna.storage"] == sweep_database.replace(PASSWORD, "***")
    output = capfd.readouterr()
    assert PASSWORD not in output.out + output.err
    assert PASSWORD not in (sweep_workdir / "sweeps" / "tiny" / "summary.json").read_text()


def test_a_killed_workers_trial_fails_by_heartbeat_and_is_retried_once(sweep_config, sweep_workdir, mlflow_uri, sweep_database):
    config = sweep_config(sweep__storage=sweep_database)
    params = sweep_workdir / "params.yaml"
    params.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    timing = ["--heartbeat-interval", "1", "--grace-period", "2"]
    log = (sweep_workdir / "victim.log").open("w")
    command = [sys.executable, "-m", "vaelab.sweep", "--params", str(params), "--n-trials", "2", *timing]
    victim = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        killed = wait_for_running_trial(sweep_database, victim, timeout=150)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
        log.close()
    assert study_in(sweep_database).trials[killed.number].state == TrialState.RUNNING  # nobody told the study

    summary = coordinator.run_sweep(config, n_trials=2, heartbeat_interval=1, grace_period=2)

    trials = study_in(sweep_database).get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [trial for trial in trials if trial.system_attrs.get("retry_history")]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.system_attrs["retry_history"] == [killed.number]
    assert retry.system_attrs["failed_trial"] == killed.number
    assert retry.params == killed.params
    assert retry.state == TrialState.COMPLETE
    assert summary["trials"]["COMPLETE"] == 2 and summary["trials"]["RUNNING"] == 0
    parents, _ = mlflow_runs(mlflow_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the killed sweep's parent, resumed


def wait_for_running_trial(url: str, process: subprocess.Popen, timeout: float) -> optuna.trial.FrozenTrial:
    """The first trial that is RUNNING with its MLflow run started (so its heartbeat is recorded)."""
    deadline = time.monotonic() + timeout
    # One storage for all the polls: each new one keeps its connections until garbage collection, and a few
    # dozen of them beside four workers can exhaust the server's max_connections.
    storage = open_storage(url)
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited early with code {process.returncode}"
        try:
            running = optuna.load_study(study_name="tiny", storage=storage).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            running = []
        started = [trial for trial in running if "mlflow_run_id" in trial.user_attrs]
        if started:
            return started[0]
        time.sleep(0.3)
    raise AssertionError(f"no trial started within {timeout} s")


def test_4_workers_one_killed_mid_trial_complete_6_trials_with_one_retry(sweep_config, sweep_workdir, mlflow_uri, sweep_database):
    """`vaelab sweep --workers 4` on one PostgreSQL study; one worker process is SIGKILLed inside a trial."""
    config = sweep_config(sweep__storage=sweep_database)
    params = sweep_workdir / "params.yaml"
    params.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    # Four TensorFlow processes on a small machine can starve a heartbeat thread for a few seconds: a
    # grace period of 2 s then fails live trials too, so this test allows 10 s.
    timing = ["--heartbeat-interval", "1", "--grace-period", "10"]
    command = [sys.executable, "-m", "vaelab.sweep", "--params", str(params), "--workers", "4", "--n-trials", "6", *timing]
    log = (sweep_workdir / "sweep.log").open("w")
    sweeping = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        killed = wait_for_running_trial(sweep_database, sweeping, timeout=200)
        worker_pid = int(killed.user_attrs["worker"].rpartition(":")[2])
        assert worker_pid != sweeping.pid  # a worker process, not the coordinator
        os.kill(worker_pid, signal.SIGKILL)
        sweeping.wait(timeout=400)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
        log.close()
    assert sweeping.returncode == 0, (sweep_workdir / "sweep.log").read_text()[-3000:]

    trials = study_in(sweep_database).get_trials()
    numbers = [trial.number for trial in trials]
    assert numbers == list(range(len(numbers)))  # 0 duplicated trial numbers
    assert sum(trial.state == TrialState.COMPLETE for trial in trials) == 6  # the retry fills the killed one's slot
    assert trials[killed.number].state == TrialState.FAIL
    retries = [trial for trial in trials if trial.system_attrs.get("retry_history")]
    states = [(trial.number, trial.state.name, trial.system_attrs.get("retry_history")) for trial in trials]
    assert [retry.system_attrs["retry_history"] for retry in retries] == [[killed.number]], states
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    assert len({trial.user_attrs["worker"] for trial in trials}) == 4
    parents, children = mlflow_runs(mlflow_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # One child run per trial that opened one, the killed one included; every COMPLETE trial opened one.
    log_tail = (sweep_workdir / "sweep.log").read_text()[-6000:]
    opened = [trial.number for trial in trials if "mlflow_run_id" in trial.user_attrs]
    logged = sorted(int(child.data.params["optuna.trial_number"]) for child in children)
    assert logged == opened and killed.number in logged, (states, log_tail)
    assert {trial.number for trial in trials if trial.state != TrialState.FAIL} <= set(opened)  # COMPLETE, PRUNED
    # A trial that failed before its run (not a surplus one, which never starts) must say why. CI once had one
    # such trial beside this test's kill (the reason was not recorded then): shown as a warning, not failed on.
    unopened = [trial for trial in trials if trial.number not in opened and not trial.user_attrs.get(SURPLUS_ATTR)]
    assert all(FAIL_REASON_ATTR in trial.user_attrs for trial in unopened), (states, log_tail)
    for trial in unopened:
        warnings.warn(f"trial {trial.number} failed before opening its run: {trial.user_attrs[FAIL_REASON_ATTR]}", stacklevel=1)
