"""End to end: `dvc exp run` on Fashion-MNIST and on the face preset, in a temporary copy of the repository.

Fashion-MNIST comes from Debian's dataset-fashion-mnist when the canonical mirror is unreachable (as here);
the faces are a folder of images the test generates outside the repository, like a user's CelebA.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from repo_copy import repo_fixture, run_ok

from vaelab.data.sources import FASHION_MNIST_DEBIAN_DIR
from vaelab.data.synthetic import write_faces

pytestmark = pytest.mark.slow

SHRINK = {
    "data": {"max_train": 1024, "max_test": 256},
    "train": {"epochs": 1, "batch_size": 128},
    "evaluate": {"latent_points": 256, "manifold_grid": 5, "nll_images": 64, "nll_samples": 10, "quality_samples": 256},
    "classifier": {"epochs": 1},
}

repo = repo_fixture(SHRINK)


def _runs(env: dict, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]))


@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_experiment_runs_end_to_end(repo: tuple[Path, dict]) -> None:
    root, env = repo
    run_ok(["dvc", "exp", "run", "-S", "data.dataset=fashion_mnist", "-n", "fashion"], root, env)

    manifest = json.loads((root / "data/raw/fashion_mnist/manifest.json").read_text())
    assert manifest["source"] == f"IDX files in {FASHION_MNIST_DEBIAN_DIR}"
    assert json.loads((root / "data/processed/meta.json").read_text())["class_names"][0] == "T-shirt/top"
    client, runs = _runs(env, "vaelab-mnist")
    run = runs[-1]
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("fashion_mnist-z2-")
    assert run.data.tags.get("dvc.exp_name") == "fashion"
    assert "test_neg_elbo_k1_grayscale_nats" in run.data.metrics and "latent_knn_accuracy" in run.data.metrics
    assert "plots/latent_space.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}


def test_face_preset_on_a_generated_folder_runs_end_to_end(repo: tuple[Path, dict], tmp_path: Path) -> None:
    root, env = repo
    faces = tmp_path / "faces"  # outside the repository, like a downloaded CelebA
    write_faces(faces, 240, seed=0, groups=("neutral", "smiling"))
    preset = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "preset", "celeba"], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    run_ok(["dvc", "exp", "run", *preset, "-S", f"data.image_dir={faces}", "-S", "data.image_size=64", "-n", "faces"], root, env)

    meta = json.loads((root / "data/processed/meta.json").read_text())
    assert meta["image_shape"] == [64, 64, 3] and meta["crop"] == "celeba" and meta["listed"] == 240
    client, runs = _runs(env, "vaelab-faces")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("image_folder-z200-r10000-")
    assert run.data.params["train.use_batch_norm"] == "True" or run.data.params["train.use_batch_norm"].lower() == "true"
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/reconstructions.png", "plots/samples.png", "plots/latent_arithmetic.png"} <= plots

    # A changed image re-runs the pipeline from the download stage.
    write_faces(faces / "extra", 1, seed=9)
    status = run_ok(["dvc", "status", "download"], root, env)
    assert "changed deps" in status.stdout or "modified" in status.stdout
