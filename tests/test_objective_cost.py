"""bench/objective_cost.py: how it books a trial's seconds to its parts, worked by hand, and a real tiny run of
two trials in one fresh process that must write every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import objective_cost
from bench.objective_cost import BUILD, DATA, INTERPRETER, MLFLOW, OBJECTIVE, OTHER, PARTS, PICTURES, STARTUP, TRAINING

PROJECT = Path(__file__).resolve().parents[1]


def _trial(objective: float, training: float) -> dict[str, float]:
    return {BUILD: 1.0, TRAINING: training, OBJECTIVE: objective, PICTURES: 0.5, MLFLOW: 0.5, OTHER: 0.0}


def _process(start: float, *trials: dict[str, float]) -> dict:
    wall = {"process": {INTERPRETER: start / 2, STARTUP: start / 2, DATA: 0.0}, "trials": list(trials)}
    return {"wall": wall, "rss_mb": [100.0] * len(trials)}


def test_a_process_start_is_shared_by_its_trials_and_rounds_give_medians():
    # before: one trial per process, start 10 s, objective 40 s, training 40 s: 92 s a trial.
    before = [{"processes": [_process(10.0, _trial(40.0, 40.0)), _process(10.0, _trial(40.0, 40.0))]}] * 3
    # after: two trials per process, so 5 s of start each; objective 10 s: 57 s a trial in rounds 1 and 3,
    # and a slower round 2 (training 50 s: 67 s) that the median leaves out.
    after = [
        {"processes": [_process(10.0, _trial(10.0, 40.0), _trial(10.0, 40.0))]},
        {"processes": [_process(10.0, _trial(10.0, 50.0), _trial(10.0, 50.0))]},
        {"processes": [_process(10.0, _trial(10.0, 40.0), _trial(10.0, 40.0))]},
    ]
    versions = objective_cost.summarize({"before": before, "after": after})

    assert versions["before"]["total_seconds_per_trial"] == 92.0
    assert versions["before"]["objective_and_process_start_share"] == 50.0 / 92.0
    assert versions["after"]["seconds_per_trial"][INTERPRETER] == 2.5
    assert versions["after"]["seconds_per_trial"][STARTUP] == 2.5
    assert versions["after"]["seconds_per_trial"][TRAINING] == 40.0  # median of 40, 50, 40
    assert versions["after"]["totals_by_round"] == [57.0, 67.0, 57.0]
    assert versions["after"]["total_seconds_per_trial"] == 57.0
    assert versions["after"]["objective_and_process_start_share"] == 15.0 / 57.0
    assert versions["after"]["total_over_first_version"] == 57.0 / 92.0
    assert versions["after"]["ratios_by_round"] == [57.0 / 92.0, 67.0 / 92.0, 57.0 / 92.0]
    assert sum(versions["after"]["shares"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_tiny_run_times_every_part_of_two_trials_in_one_process(tiny_project, tmp_path: Path):
    work = tiny_project()
    version = tmp_path / "version"
    version.mkdir()
    (version / "src").symlink_to(PROJECT / "src")
    (version / "params.yaml").write_text((work / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "objective_cost.json"
    tiny = ["sweep.epochs=2", "sweep.max_train=64", "sweep.pruning_nll_images=8", "sweep.trials_per_process=2"]
    command = [sys.executable, "-m", "bench.objective_cost", "--version", f"now={version}", "--rounds", "1", "--trials", "2"]
    command += [f"--set={item}" for item in tiny] + ["--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["machine"]["cpu_model"]
    (process,) = figures["runs"]["now"][0]["processes"]  # both trials in one process: trials_per_process=2
    assert len(process["rss_mb"]) == 2
    for kind in ("wall", "cpu"):
        now = figures["versions"][kind]["now"]
        assert set(now["seconds_per_trial"]) == set(PARTS)
        assert now["total_seconds_per_trial"] == pytest.approx(sum(now["seconds_per_trial"].values()))
        assert len(process[kind]["trials"]) == 2
        for trial in process[kind]["trials"]:
            assert trial[TRAINING] > 0 and trial[OBJECTIVE] > 0 and trial[BUILD] > 0 and trial[MLFLOW] > 0
        assert process[kind]["process"][STARTUP] > 1.0  # TensorFlow's import alone
        assert "| objective: validation NLL |" in figures["tables"][kind]
    assert process["wall"]["process"][INTERPRETER] > 0
