"""A sweep's memory stays flat: trials run in worker processes that are replaced after sweep.trials_per_process trials.

The test samples the resident memory of every worker process the real `vaelab.sweep` coordinator starts
(psutil, every 0.1 s) while it runs a study of tiny trials.
"""

from __future__ import annotations

import threading
from collections import Counter

import psutil
import pytest
from optuna.trial import TrialState
from sweep_helpers import mlflow_runs, study_in

from vaelab.sweep import coordinator
from vaelab.sweep.storage import WORKER_ATTR

pytestmark = pytest.mark.slow

N_TRIALS = 6


class WorkerMemory:
    """Peak resident memory (MB) of each sweep worker process started by this one, sampled until stopped.

    Only the workers (``python -m vaelab.sweep --worker``), which the coordinator in this process starts as its
    own children: the run's short-lived ``git`` calls are children too, and a worker's own ``git`` child, forked
    from it, carries the worker's command line and memory until it execs; a loaded machine (parallel test
    workers) keeps both alive long enough to be sampled.
    """

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            for child in me.children(recursive=False):
                try:
                    if "--worker" not in child.cmdline():
                        continue
                    rss = child.memory_info().rss / 2**20
                    self.started.setdefault(child.pid, child.create_time())
                except psutil.NoSuchProcess:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss)

    def in_order(self) -> list[float]:
        return [self.peaks[pid] for pid in sorted(self.peaks, key=self.started.__getitem__)]


def test_each_trial_in_a_fresh_process_keeps_memory_flat_and_the_study_whole(sweep_config, sweep_workdir, mlflow_uri) -> None:
    config = sweep_config(sweep__trials_per_process=1, sweep__pruner="none", sweep__epochs=1)

    with WorkerMemory() as memory:
        summary = coordinator.run_sweep(config, workers=1, n_trials=N_TRIALS)

    trials = study_in().get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * N_TRIALS
    # One worker process per trial, each a new one.
    assert sorted(Counter(trial.user_attrs[WORKER_ATTR] for trial in trials).values()) == [1] * N_TRIALS
    assert summary["best_value"] is not None
    parents, children = mlflow_runs(mlflow_uri)
    assert len(parents) == 1 and len(children) == N_TRIALS
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parents[0].info.run_id}

    # Every process does the same work, so each peaks alike: no growth from one trial to the next. A generous
    # bound, 60 MB across the whole study, for the noise of sampling at 0.1 s.
    peaks = memory.in_order()
    assert len(peaks) == N_TRIALS, peaks
    assert max(peaks) - min(peaks) < 60, peaks


def test_trials_per_process_batches_trials_into_processes(sweep_config, sweep_workdir, mlflow_uri) -> None:
    config = sweep_config(sweep__trials_per_process=4, sweep__pruner="none", sweep__epochs=1)

    coordinator.run_sweep(config, workers=1, n_trials=N_TRIALS)

    trials = study_in().get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * N_TRIALS
    # The first process runs 4 trials and stops; a fresh one runs the last 2.
    assert [count for _, count in Counter(trial.user_attrs[WORKER_ATTR] for trial in trials).most_common()] == [4, 2]
