"""Sweep figures: epochs and best value with and without pruning, and memory across a long sweep.

Each study runs as ``python -m vaelab.sweep`` (one worker, in the child process itself) in the scratch
workspace with a journal file of its own; its trials are read back through ``vaelab.sweep.storage``. Epochs
spent = the validation values the trials reported, one per finished epoch. A trial's peak RSS is the
largest RSS sample of the process between the trial's start and end.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bench.pipeline import stage_env
from bench.processes import BenchError, Measured, run_measured
from bench.stats import least_squares_slope

log = logging.getLogger("bench")

SWEEP_TIMEOUT = 4 * 3600
# Memory counts as flat when the per-trial peak RSS grows by at most this much per trial (after the first).
FLAT_MB_PER_TRIAL = 2.0


def run_study(work: Path, logs: Path, name: str, *, trials: int, epochs: int, max_train: int, pruner: str) -> dict:
    """Run one study to ``trials`` finished trials and describe it: epochs, best value, states, per-trial RSS."""
    storage = work / "sweeps" / f"{name}.journal"
    command = [
        sys.executable,
        "-m",
        "vaelab.sweep",
        "--params",
        "params.yaml",
        "--study",
        name,
        "--storage",
        str(storage),
        "--n-trials",
        str(trials),
        "--set",
        f"sweep.epochs={epochs}",
        "--set",
        f"sweep.max_train={max_train}",
        "--set",
        f"sweep.pruner={pruner}",
        "--set",
        "sweep.timeout_minutes=null",
    ]
    run = run_measured(command, cwd=work, env=stage_env(work), log=logs / f"sweep-{name}.log", timeout=SWEEP_TIMEOUT, sample_rss=True)
    finished = read_trials(work, storage, name)
    if not finished:
        raise BenchError(f"study {name} has no trials (see {run.log})")
    complete = [t["value"] for t in finished if t["state"] == "COMPLETE" and t["value"] is not None]
    states: dict[str, int] = {}
    for trial in finished:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    per_trial_rss = trial_peaks(run, finished)
    log.info(
        "study %s: %d trials %s, %d epochs, best %s, %.0f s",
        name,
        len(finished),
        states,
        sum(t["epochs"] for t in finished),
        min(complete) if complete else None,
        run.wall_seconds,
    )
    return {
        "trials": len(finished),
        "states": states,
        "epochs_spent": sum(t["epochs"] for t in finished),
        "best_value": min(complete) if complete else None,
        "wall_seconds": run.wall_seconds,
        "peak_rss_mb": run.peak_rss_mb,
        "trial_peak_rss_mb": per_trial_rss,
    }


def trial_peaks(run: Measured, trials: list[dict]) -> list[float | None]:
    """Largest RSS sample within each trial's [start, end] (times as time.time()); None if none fell inside."""
    peaks = []
    for trial in trials:
        inside = [mb for t, mb in run.rss_samples if trial["start"] <= t <= trial["end"]]
        peaks.append(max(inside) if inside else None)
    return peaks


def memory_growth(peaks: list[float | None]) -> tuple[float | None, bool | None]:
    """(MB per trial after the first, flat?) from per-trial peak RSS; the first trial builds caches and is skipped."""
    values = [p for p in peaks[1:] if p is not None]
    slope = least_squares_slope(values)
    return slope, None if slope is None else slope <= FLAT_MB_PER_TRIAL


def compare_pruning(pruned: dict, unpruned: dict) -> dict:
    """Epochs of the pruned study as a fraction of the unpruned one's, and its best value's relative gap (+ = worse)."""
    fraction = pruned["epochs_spent"] / unpruned["epochs_spent"] if unpruned["epochs_spent"] else None
    gap = None
    if pruned["best_value"] is not None and unpruned["best_value"]:
        gap = (pruned["best_value"] - unpruned["best_value"]) / abs(unpruned["best_value"])
    return {"epochs_fraction": fraction, "best_value_gap": gap}


def read_trials(work: Path, storage: Path, name: str) -> list[dict]:
    """The finished trials of study ``name``, each with its parameters and its reported values by epoch."""
    from vaelab.config.load import load_config
    from vaelab.sweep.storage import open_storage, open_study

    study = open_study(load_config(work / "params.yaml"), open_storage(str(storage)), name)
    described = []
    for trial in study.get_trials(deepcopy=False):
        if trial.datetime_start is None or trial.datetime_complete is None:
            continue
        described.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "epochs": len(trial.intermediate_values),
                "params": trial.params,
                "curve": [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)],
                # Optuna keeps naive local datetimes; .timestamp() reads them as local time, like time.time().
                "start": trial.datetime_start.timestamp(),
                "end": trial.datetime_complete.timestamp(),
            }
        )
    return described
