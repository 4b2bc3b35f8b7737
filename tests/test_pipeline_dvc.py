"""End to end: real `dvc repro` in a temporary copy of the repository, on real MNIST from the package registry.

The copy is shrunk through params.yaml (few images, one epoch) the way a user would try a quick run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_copy import repo_fixture, run_ok

pytestmark = [pytest.mark.slow, pytest.mark.registry]

SHRINK = {
    "data": {"max_train": 1024, "max_test": 512},
    "train": {"epochs": 2, "batch_size": 128},
    "evaluate": {"latent_points": 500, "manifold_grid": 5, "nll_images": 100, "nll_samples": 20, "quality_samples": 1000},
    "classifier": {"epochs": 1},
}

repo = repo_fixture(SHRINK)


def test_download_and_preprocess_then_nothing_to_do(repo: tuple[Path, dict]) -> None:
    root, env = repo
    run_ok(["dvc", "repro", "preprocess"], root, env)
    manifest = json.loads((root / "data/raw/mnist/manifest.json").read_text())
    assert manifest["label_counts"]["train"] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert manifest["label_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    again = run_ok(["dvc", "repro", "preprocess"], root, env)
    assert "Stage 'download' didn't change, skipping" in again.stdout
    assert "Stage 'preprocess' didn't change, skipping" in again.stdout
    status = run_ok(["dvc", "status", "preprocess"], root, env)
    assert "up to date" in status.stdout


def test_full_pipeline_is_one_finished_mlflow_run(repo: tuple[Path, dict]) -> None:
    from mlflow.tracking import MlflowClient

    root, env = repo
    run_ok(["dvc", "repro"], root, env)
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics) >= {
        "test_mse_per_pixel",
        "test_kl_per_image",
        "test_loss",
        "test_neg_elbo_k1_grayscale_nats",
        "latent_knn_accuracy",
        "latent_logreg_accuracy",
    }
    assert 0 < metrics["test_mse_per_pixel"] < 0.2
    pngs = {p.name for p in (root / "reports/plots").glob("*.png")}
    assert pngs == {"reconstructions.png", "latent_space.png", "samples.png", "manifold.png", "loss_curves.png"}
    run_id = json.loads((root / "models/mlflow_run.json").read_text())["run_id"]

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("mnist-z2-r1000-")
    assert run.data.params["train.z_dim"] == "2"
    assert run.data.metrics["test_neg_elbo_k1_grayscale_nats"] == pytest.approx(metrics["test_neg_elbo_k1_grayscale_nats"])
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/reconstructions.png" in artifacts

    # A variation through `dvc exp run` is a second, comparable run named after the DVC experiment.
    run_ok(["dvc", "exp", "run", "-S", "train.z_dim=3", "-n", "z3"], root, env)
    runs = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.params["train.z_dim"] for r in runs] == ["2", "3"]
    assert runs[1].data.tags.get("dvc.exp_name") == "z3"
    assert runs[1].info.status == "FINISHED" and "test_neg_elbo_k1_grayscale_nats" in runs[1].data.metrics

    again = run_ok(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date." in again.stdout
