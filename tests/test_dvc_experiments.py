"""Experiments launched away from the workspace (DVC's queue with two workers, `dvc exp run --temp`) reach both
trackers: their MLflow runs land in the project's own store, and DVC compares their committed results.

A throwaway git+DVC copy of the repository on real MNIST (from the package registry), shrunk to seconds per
stage. No MLFLOW_TRACKING_URI: the runs must find the project root's mlflow.db by themselves, although DVC
runs them in temporary copies under .dvc/tmp/exps that it deletes afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow_helpers import experiment_runs
from repo_copy import PROJECT_ROOT, make_repo_copy, run_ok
from tiny import tiny_settings

pytestmark = [pytest.mark.slow, pytest.mark.registry]

SHRINK = tiny_settings(
    {
        "data": {"max_train": 512, "max_test": 256},
        "train": {"epochs": 2, "batch_size": 64},  # two epochs: each experiment's loss curve has two points
        "evaluate": {"latent_points": 200, "nll_images": 64, "nll_samples": 8, "quality_samples": 500},
        "classifier": {"epochs": 1},
    }
)
QUEUED = {"q-z3": ["train.z_dim=3"], "q-z4": ["train.z_dim=4"]}
FAILING = {"q-nan": ["train.learning_rate=1000000.0", "train.r_loss_factor=1e+30"]}  # the loss overflows in epoch 1
TEMP = {"t-z5": ["train.z_dim=5"]}
HEADLINE = ["sample_fid_classifier", "test_neg_elbo_k1_grayscale_nats", "test_nll_k8_grayscale_nats"]


def _overrides(settings: list[str]) -> list[str]:
    return [flag for setting in settings for flag in ("-S", setting)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The copy after `dvc repro`, its results committed as a user would, then the experiments run."""
    root = tmp_path_factory.mktemp("exps")
    env = make_repo_copy(root, SHRINK)
    del env["MLFLOW_TRACKING_URI"]
    run_ok(["dvc", "repro"], root, env)
    run_ok(["git", "add", "-A"], root, env)
    run_ok(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline results"], root, env)

    for name, settings in {**QUEUED, **FAILING}.items():
        run_ok(["dvc", "exp", "run", "--queue", "-n", name, *_overrides(settings)], root, env)
    # Two workers at once, both writing to the one SQLite store; the failing experiment fails the command.
    subprocess.run(["dvc", "exp", "run", "--run-all", "-j", "2"], cwd=root, env=env, capture_output=True, timeout=1800)
    for name, settings in TEMP.items():
        run_ok(["dvc", "exp", "run", "--temp", "-n", name, *_overrides(settings)], root, env)
    return root, env


def _runs_by_experiment_name(root: Path) -> dict[str | None, Run]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = experiment_runs(client, "vaelab-mnist")
    by_name = {run.data.tags.get("dvc.exp_name"): run for run in runs}
    assert len(by_name) == len(runs), [run.data.tags.get("dvc.exp_name") for run in runs]
    return by_name


def test_every_experiment_is_a_run_in_the_project_store(project: tuple[Path, dict]) -> None:
    from mlflow.tracking import MlflowClient

    root, _ = project
    runs = _runs_by_experiment_name(root)
    assert sorted(runs, key=str) == sorted([None, *QUEUED, *FAILING, *TEMP], key=str)  # None: the baseline `dvc repro`
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    for name in (*QUEUED, *TEMP):
        run = runs[name]
        z_dim = run.data.params["train.z_dim"]
        assert run.info.status == "FINISHED", name
        assert run.info.run_name == f"mnist-z{z_dim}-r1000-{name}"
        assert {"test_neg_elbo_k1_grayscale_nats", "test_nll_k8_grayscale_nats", "sample_fid_classifier"} <= set(run.data.metrics), name
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2], name
        # The pictures went to mlartifacts/ in the project root, not into the temporary copy.
        stored = root / "mlartifacts" / "vaelab-mnist" / run.info.run_id / "artifacts" / "plots" / "loss_curves.png"
        assert stored.stat().st_size > 0, name
    assert runs["q-nan"].info.status == "FAILED"
    assert "test_neg_elbo_k1_grayscale_nats" not in runs["q-nan"].data.metrics


def _experiments(root: Path, env: dict) -> dict[str, dict]:
    """`dvc exp show --json` flattened to {experiment name: its data}."""
    shown = json.loads(run_ok(["dvc", "exp", "show", "--json"], root, env).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                found[rev["name"]] = rev["data"]
    return found


def test_dvc_exp_show_holds_each_experiments_metrics_equal_to_mlflows(project: tuple[Path, dict]) -> None:
    root, env = project
    shown = _experiments(root, env)
    runs = _runs_by_experiment_name(root)
    for name in (*QUEUED, *TEMP):
        metrics = shown[name]["metrics"]["reports/metrics.json"]["data"]
        for key in HEADLINE:
            assert metrics[key] == runs[name].data.metrics[key], (name, key)
        assert shown[name]["metrics"]["reports/classifier_metrics.json"]["data"]["classifier_test_accuracy"] > 0


def test_dvc_metrics_and_plots_diff_compare_two_experiments(project: tuple[Path, dict]) -> None:
    root, env = project
    a, b = QUEUED
    diff = json.loads(run_ok(["dvc", "metrics", "diff", a, b, "--json"], root, env).stdout)
    shown = _experiments(root, env)
    elbo = diff["reports/metrics.json"]["test_neg_elbo_k1_grayscale_nats"]
    assert (elbo["old"], elbo["new"]) == tuple(
        shown[name]["metrics"]["reports/metrics.json"]["data"]["test_neg_elbo_k1_grayscale_nats"] for name in (a, b)
    )

    plots = json.loads(run_ok(["dvc", "plots", "diff", a, b, "--json"], root, env).stdout)["data"]
    (curve,) = plots["Loss per epoch"]
    points = curve["content"]["data"]["values"]
    for name in (a, b):  # both experiments' curves: two epochs of loss and val_loss each
        drawn = sorted((row["field"], row["epoch"]) for row in points if row["rev"] == name)
        assert drawn == [("loss", "1"), ("loss", "2"), ("val_loss", "1"), ("val_loss", "2")], name
    # The pictures come out of DVC's cache for each experiment.
    samples = {entry["revisions"][0]: Path(entry["url"]) for entry in plots["reports/plots/samples.png"]}
    assert sorted(samples) == sorted([a, b]) and all(path.stat().st_size > 0 for path in samples.values())


def test_make_exps_prints_one_row_per_experiment_with_changed_params_and_headline_metrics(project: tuple[Path, dict]) -> None:
    root, env = project
    # The project's own Makefile target, with its set-up step pointed at the venv running these tests.
    command = [
        "make",
        "-s",
        "-f",
        str(PROJECT_ROOT / "Makefile"),
        "exps",
        "STAMP=",
        f"BIN={Path(env['PATH'].split(':')[0])}",
        "EXPS_ARGS=--md",
    ]
    table = run_ok(command, root, env).stdout.strip().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header == ["Experiment", "Created", "State", *HEADLINE, "train.z_dim", "train.r_loss_factor", "train.learning_rate"]
    names = [match.group(1) for line in table[2:] if (match := re.search(r"\[(.+?)\]", line))]
    assert sorted(names) == sorted([*QUEUED, *FAILING, *TEMP])


def _training_process(root: Path, timeout: float = 600):
    """The `python pipeline/train.py` that a queue worker runs in a temporary copy of ``root``."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline", "cwd"]):
            command, cwd = process.info["cmdline"] or [], process.info["cwd"] or ""
            # `pipeline/train.py` as an argument of its own: the shell that DVC starts it through holds it in a longer one.
            if "pipeline/train.py" in command and cwd.startswith(str(root / ".dvc" / "tmp" / "exps")):
                return process
        time.sleep(0.5)
    raise AssertionError(f"no training started by the queue within {timeout:g} s")


def test_a_queue_worker_killed_mid_training_leaves_a_failed_run_and_the_experiment_runs_again(project: tuple[Path, dict]) -> None:
    from mlflow.tracking import MlflowClient

    root, env = project
    run_ok(["dvc", "exp", "run", "--queue", "-n", "q-killed", "-S", "train.z_dim=6", "-S", "train.epochs=10000"], root, env)
    # The worker it starts keeps inherited pipes open until it stops: capture nothing, or this waits for the training.
    started = subprocess.run(
        ["dvc", "queue", "start"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
    )
    assert started.returncode == 0
    training = _training_process(root)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    deadline = time.monotonic() + 600
    while not (killed := _runs_by_experiment_name(root).get("q-killed")) or not client.get_metric_history(killed.info.run_id, "loss"):
        assert time.monotonic() < deadline, "the queued training logged no epoch within 600 s"
        time.sleep(0.5)
    training.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 300
    while not re.search(r"^\S+\s+q-killed\s.*\bFailed\b", run_ok(["dvc", "queue", "status"], root, env).stdout, re.MULTILINE):
        assert time.monotonic() < deadline, "DVC did not report the killed experiment as failed"
        time.sleep(1)
    run_ok(["dvc", "queue", "stop", "--kill"], root, env)

    # Run it again (in a fresh temporary copy): it trains, and opening the experiment ends the orphan.
    run_ok(["dvc", "exp", "run", "--temp", "-n", "q-again", "-S", "train.z_dim=6"], root, env)
    runs = _runs_by_experiment_name(root)
    assert runs["q-again"].info.status == "FINISHED"
    assert runs["q-killed"].info.status == "FAILED"
    assert runs["q-killed"].data.tags["vaelab.failure"].startswith(f"process {training.pid} on ")
