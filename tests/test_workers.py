"""`vaelab train --workers N`: one training on N processes of this machine, as a real TensorFlow cluster.

The slow tests start real worker processes talking gRPC on 127.0.0.1 and log to a real SQLite store;
the fast ones check the cluster description, the chief rule and the refusals that come before any process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import psutil
import pytest
from mlflow.tracking import MlflowClient

from vaelab import distribute, workers
from vaelab.errors import ConfigError

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# Enough steps and a step size large enough that the loss falls well beyond the agreement tolerance.
CURVE = {"train": {"epochs": 3, "learning_rate": 0.002}}


def _train(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "train", *args], cwd=folder, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    return [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]


def _steps(uri: str, run_id: str, key: str = "loss") -> list[int]:
    return sorted(metric.step for metric in MlflowClient(uri).get_metric_history(run_id, key))


def _files(folder: Path) -> set[str]:
    skip = {"mlflow.db", "mlartifacts"}
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in skip}


def _history(folder: Path) -> list[dict[str, str]]:
    with (folder / "reports/history.csv").open() as handle:
        return list(csv.DictReader(handle))


# --- the cluster description and who is chief (no TensorFlow) -------------------------------------------


def test_each_worker_gets_the_whole_cluster_and_its_own_index() -> None:
    addresses = ["127.0.0.1:5001", "127.0.0.1:5002"]
    configs = [json.loads(workers.cluster_config(addresses, index)) for index in range(2)]

    assert configs == [
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 0}},
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}},
    ]


def test_free_ports_are_distinct_and_bindable() -> None:
    import socket

    ports = workers.free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as sock:
            sock.bind((workers.HOST, port))


@pytest.mark.parametrize(
    ("tf_config", "chief", "label"),
    [
        (None, True, ""),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True, "worker 0 of 2"),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False, "worker 1 of 2"),
        # With a "chief" job, TensorFlow's chief is that task and worker 0 is an ordinary worker.
        ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}, False, "worker 0 of 2"),
        ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}, True, "chief 0 of 2"),
    ],
)
def test_the_chief_is_worker_0_unless_the_cluster_names_one(tf_config, chief: bool, label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))

    assert (distribute.is_chief(), distribute.worker_label()) == (chief, label)


@pytest.mark.parametrize("text", ["{cluster:", "[1, 2]", '{"cluster": ["a:1"]}', '{"task": "worker"}'])
def test_a_malformed_tf_config_is_named_in_one_line(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CONFIG", text)

    with pytest.raises(ConfigError, match=r"^TF_CONFIG=.*expected JSON like"):
        distribute.is_chief()


@pytest.mark.parametrize(("code", "said"), [(-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM"), (1, "exited with code 1")])
def test_how_a_worker_ended_is_said_in_words(code: int, said: str) -> None:
    assert workers._how_it_ended(code) == said


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "argument --workers: expected a whole number of workers from 1 to"),
        (["--workers", "two"], {}, "argument --workers: expected a whole number of workers from 1 to"),
        (["--workers", "2"], {"TF_CONFIG": '{"cluster": {}}'}, "--workers starts its own cluster on this machine, but TF_CONFIG is set"),
    ],
)
def test_impossible_worker_requests_are_one_line_and_exit_2_before_any_worker(tiny_project, args, env, message) -> None:
    folder = tiny_project()

    done = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "train", *args], cwd=folder, env={**ENV, **env}, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1]
    assert not (folder / "models").exists()


def test_processed_data_from_other_params_is_refused_once_by_the_launcher(tiny_project) -> None:
    folder = tiny_project()

    done = _train(folder, "--workers", "2", "--set", "data.dataset=fashion_mnist", timeout=120)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.dataset" in lines[0] and "[worker" not in done.stderr, done.stderr


# --- a real cluster of two processes --------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_logs_and_writes(tiny_project, tmp_path: Path) -> None:
    project = tiny_project(CURVE)
    single, cluster = project / "single", project / "cluster"
    for folder in (single, cluster):
        shutil.copytree(project / "data", folder / "data")
        shutil.copy(project / "params.yaml", folder)
    uris = {folder: f"sqlite:///{folder / 'mlflow.db'}" for folder in (single, cluster)}

    one = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "train"],
        cwd=single,
        env={**ENV, "MLFLOW_TRACKING_URI": uris[single]},
        capture_output=True,
        text=True,
        timeout=600,
    )
    two = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "train", "--workers", "2"],
        cwd=cluster,
        env={**ENV, "MLFLOW_TRACKING_URI": uris[cluster]},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]

    # The same global batch of 32 on the same batches: the curves differ only by the replicas' sampling
    # noise (each draws its own for its half of the batch). Measured here: under 0.1% apart; 2% is far
    # below the 15% the loss falls over the three epochs, so a worker training the wrong share would show.
    curves = {folder: _history(folder) for folder in (single, cluster)}
    for key in ("loss", "val_loss"):
        mine, theirs = ([float(row[key]) for row in curves[folder]] for folder in (single, cluster))
        assert len(theirs) == 3
        assert theirs == pytest.approx(mine, rel=0.02), (key, mine, theirs)
        assert theirs[-1] < 0.9 * theirs[0]
    assert [row["learning_rate"] for row in curves[single]] == [row["learning_rate"] for row in curves[cluster]]

    # One run, FINISHED, each epoch logged once; the other worker left no file of its own.
    (run,) = _runs(uris[cluster])
    assert run.info.status == "FINISHED"
    assert _steps(uris[cluster], run.info.run_id) == [1, 2, 3]
    assert _files(cluster) == _files(single)
    assert "[worker 1]" in two.stderr and "Epoch" not in "".join(line for line in two.stderr.splitlines() if line.startswith("[worker 1]"))


@pytest.mark.slow
def test_a_killed_worker_stops_the_cluster_in_one_line_and_the_rerun_resumes_the_same_run(tiny_project) -> None:
    folder = tiny_project({"train": {"epochs": 8}}, sizes=(640, 64, 96))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**ENV, "MLFLOW_TRACKING_URI": uri}
    state = folder / "checkpoints/train/state.json"

    launcher = subprocess.Popen(
        [sys.executable, "-m", "vaelab.cli", "train", "--workers", "2"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.1)
    started = psutil.Process(launcher.pid).children()
    (worker,) = [p for p in started if '"index": 1' in p.environ().get("TF_CONFIG", "")]
    worker.send_signal(signal.SIGKILL)  # mid-epoch: an epoch takes about a second here
    _, stderr = launcher.communicate(timeout=120)

    assert launcher.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        f"vaelab: error: worker 1 of 2 (pid {worker.pid}) was killed by SIGKILL; stopped the other workers; "
        "run the same command again to resume from the last completed epoch"
    )
    (run,) = _runs(uri)
    assert run.info.status == "FAILED"
    assert not [p.pid for p in started if p.is_running()]  # the chief was stopped, not left waiting for its peer
    done_epochs = json.loads(state.read_text())["epoch"]
    assert 2 <= done_epochs < 8
    assert not (folder / "models/vae.keras").exists()

    again = _train(folder, "--workers", "2")

    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming training from the checkpoint after epoch {done_epochs}" in again.stderr
    (resumed,) = _runs(uri)
    assert (resumed.info.run_id, resumed.info.status) == (run.info.run_id, "FINISHED")
    assert _steps(uri, run.info.run_id) == list(range(1, 9))
    assert [int(row["epoch"]) for row in _history(folder)] == list(range(1, 9))
    assert json.loads((folder / "models/mlflow_run.json").read_text())["run_id"] == run.info.run_id


class _StopAfterOneEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


@pytest.mark.slow
def test_workers_that_would_resume_from_different_epochs_refuse_to_train(tiny_project) -> None:
    """Across machines without a shared checkpoint folder, worker 1 would start afresh beside a resumed chief."""
    from vaelab.config.load import load_config
    from vaelab.data.processed import load_splits
    from vaelab.training import train

    folder = tiny_project({"train": {"epochs": 3}})
    env = {**ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    config = load_config(folder / "params.yaml")
    # The checkpoint a three-epoch training killed after its first epoch leaves.
    train(
        config,
        load_splits(config.paths.processed),
        checkpoint_dir=config.paths.checkpoints / "train",
        callbacks=[_StopAfterOneEpoch()],
        verbose=0,
    )

    addresses = [f"{workers.HOST}:{port}" for port in workers.free_ports(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "vaelab.cli", "train", *(["--set", "paths.checkpoints=elsewhere"] if index else [])],
            cwd=folder,
            env={**env, "TF_CONFIG": workers.cluster_config(addresses, index)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=300)[1] for process in processes]

    for index, (process, stderr) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 2, stderr[-3000:]
        expected = "vaelab: error: the workers would resume from different epochs (1, 0, by worker): every worker must read"
        assert stderr.strip().splitlines()[-1].startswith(expected), (index, stderr[-3000:])
    assert not (folder / "elsewhere").exists()
