"""The real train and evaluate stages on a few hundred small images, into tmp_path, with a real SQLite MLflow store."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_helpers import experiment_runs

from vaelab.config.load import load_config
from vaelab.data.processed import load_splits
from vaelab.errors import TrainingError
from vaelab.stages import run_evaluate, run_train
from vaelab.training import train

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project({"train": {"epochs": 3}})  # three: the killed training must have epochs left to resume


def test_train_then_evaluate_make_one_finished_run(project: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # the default 10 s outlasts this training
    config = load_config("params.yaml")
    run_id = run_train(config)
    metrics = run_evaluate(config)
    assert run_id is not None  # one process is its own chief

    assert Path("models/vae.keras").stat().st_size > 0
    history = Path("reports/history.csv").read_text().splitlines()
    assert history[0].split(",")[:2] == ["epoch", "loss"] and len(history) == 4
    assert json.loads(Path("reports/metrics.json").read_text()) == metrics
    assert not Path("checkpoints/train").exists()  # cleared after a completed training

    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"mnist-z2-r1000-{run_id[:6]}"
    assert run.data.params["train.encoder_filters"] == "8,8,8,8"
    assert run.data.params["base.seed"] == "42"
    for key in ("loss", "val_loss", "kl_loss", "val_reconstruction_loss", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3], key
    for key, value in metrics.items():
        assert run.data.metrics[key] == pytest.approx(value), key
    assert metrics["latent_knn_accuracy"] > 0.9  # three bars are easy to tell apart in 2-D
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"history.csv", "params.yaml", "metrics.json", "plots"} <= top
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("reconstructions", "latent_space", "samples", "manifold", "loss_curves")}
    assert json.loads(Path("models/mlflow_run.json").read_text())["run_id"] == run_id

    # The data, as MLflow datasets: one input per split, named after the dataset, sized, told apart by digest.
    meta = Path("data/processed/meta.json").read_bytes()
    assert run.inputs is not None
    inputs = {tag.value: entry.dataset for entry in run.inputs.dataset_inputs for tag in entry.tags if tag.key == "mlflow.data.context"}
    assert sorted(inputs) == ["test", "training", "validation"]
    for context, split, size in (("training", "train", 320), ("validation", "val", 64), ("test", "test", 96)):
        dataset = inputs[context]
        assert dataset.name == "mnist"
        assert dataset.digest == hashlib.sha256(b"\0".join([b"", meta, split.encode()])).hexdigest()[:12]  # no raw manifest here
        profile = json.loads(dataset.profile or "null")
        assert profile["num_images"] == size and profile["image_shape"] == [28, 28, 1]
    # What it was, on what, and how it scored, at the top of the run's page.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(
        "Convolutional VAE (chapter 3 of *Generative Deep Learning*) on **mnist**: 320 training and 64 validation images, 3 epochs, z_dim 2"
    )
    assert f"Test set (96 grayscale images): negative ELBO {metrics['test_neg_elbo_k1_grayscale_nats']:.2f}" in note
    assert f"NLL {metrics['test_nll_k4_grayscale_nats']:.2f} (NLL with K=4 importance samples on 32 images)" in note
    # CPU and memory sampled during training by MLflow's own monitor.
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert client.get_metric_history(run_id, key), key


def test_nan_loss_fails_the_run_and_writes_no_model(project: Path, mlflow_uri: str) -> None:
    config = load_config("params.yaml", {"train.learning_rate": 1e6, "train.r_loss_factor": 1e30})
    with pytest.raises(TrainingError, match=r"^loss became nan at epoch 1, by batch \d+; try a lower train.learning_rate"):
        run_train(config)
    assert not Path("models/vae.keras").exists()
    assert not Path("models/mlflow_run.json").exists()
    runs = experiment_runs(MlflowClient(mlflow_uri), "vaelab-mnist")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_killed_training_resumes_into_the_same_run(project: Path, mlflow_uri: str, project_root: Path) -> None:
    """SIGKILL after epoch 1 of 3; the next run of the stage continues at epoch 2 in the same MLflow run."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    command = [sys.executable, str(project_root / "pipeline/train.py")]
    state = Path("checkpoints/train/state.json")
    first = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        assert first.poll() is None, first.communicate()[0].decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at in (1, 2) and not Path("models/vae.keras").exists()
    # No half-written file under a final name: state.json names a complete model file, and that is the only one.
    checkpoint = json.loads(state.read_text())
    assert sorted(p.name for p in state.parent.glob("model-epoch-*.keras")) == [checkpoint["model_file"]]
    assert zipfile.ZipFile(state.parent / checkpoint["model_file"]).testzip() is None
    assert not Path("models/mlflow_run.json").exists() and not Path("reports/history.csv").exists()

    second = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"Epoch {killed_at + 1}/3" in second.stdout and "Epoch 1/3" not in second.stdout

    client = MlflowClient(mlflow_uri)
    runs = experiment_runs(client, "vaelab-mnist")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2, 3]
    assert len(Path("reports/history.csv").read_text().splitlines()) == 4

    # The same training never interrupted: the resumed one saw the same batches and noise, so its curves
    # agree to 1 part in a million (history.csv keeps 8 significant digits).
    config = load_config("params.yaml")
    uninterrupted = train(config, load_splits(config.paths.processed), verbose=0).history
    with Path("reports/history.csv").open() as handle:
        resumed = list(csv.DictReader(handle))
    for key in ("loss", "val_loss"):
        assert [float(row[key]) for row in resumed] == pytest.approx([row[key] for row in uninterrupted], rel=1e-6), key
