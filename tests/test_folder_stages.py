"""The real download, preprocess, train and evaluate stages on generated 64x64 RGB image folders, with a SQLite MLflow store.

The model is the chapter's face preset with fewer filters, so an epoch takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image
from tiny import dotted, tiny_settings

from vaelab.config.load import load_config
from vaelab.config.presets import preset_overrides
from vaelab.data.synthetic import write_faces
from vaelab.stages import run_download, run_evaluate, run_preprocess, run_train

pytestmark = pytest.mark.slow

# The tiny network on 64x64 RGB images: three output channels, and a latent space too big for the manifold plot.
FACES: dict[str, dict[str, Any]] = {
    "data": {"image_size": 64},
    "train": {"decoder_filters": [8, 8, 8, 3], "z_dim": 16, "batch_size": 16, "epochs": 2},
    "evaluate": {"batch_size": 32},
}


@pytest.fixture
def project(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, project_root: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    # The tiny settings go over the preset: it names its own (full-size) filters and batch sizes.
    overrides = {**preset_overrides("celeba", project_root / "presets", project_root / "params.yaml"), **dotted(tiny_settings(FACES))}
    for name, value in overrides.items():
        section, key = name.split(".")
        params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def run_all(config) -> tuple[str, dict]:
    run_download(config)
    run_preprocess(config)
    run_id = run_train(config)
    assert run_id is not None  # one process is its own chief
    return run_id, run_evaluate(config)


def is_colour(png: Path) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return bool(np.any(np.abs(pixels[..., 0] - pixels[..., 2]) > 30))


def test_two_subfolders_train_evaluate_and_draw_the_latent_step(project: Path, mlflow_uri: str) -> None:
    write_faces(project / "faces", 160, seed=0, groups=("neutral", "smiling"))
    config = load_config("params.yaml", {"data.image_dir": str(project / "faces")})

    run_id, metrics = run_all(config)

    meta = json.loads(Path("data/processed/meta.json").read_text())
    assert meta["image_shape"] == [64, 64, 3] and meta["class_names"] == ["neutral", "smiling"]
    assert meta["counts"] == {"train": 130, "val": 14, "test": 16}  # 160: 16 test, round(144 * 0.1) val
    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("image_folder-z16-r10000-")
    assert client.get_experiment(run.info.experiment_id).name == "vaelab-faces"
    assert run.data.params["data.crop"] == "celeba" and run.data.params["train.encoder_strides"] == "2,2,2,2"
    assert np.isfinite(metrics["test_mse_per_pixel"]) and "latent_knn_accuracy" in metrics
    plots = {p.name for p in Path("reports/plots").glob("*.png")}
    assert {"reconstructions.png", "samples.png", "latent_space.png", "latent_arithmetic.png", "loss_curves.png"} <= plots
    assert "manifold.png" not in plots  # z_dim 16
    assert is_colour(Path("reports/plots/reconstructions.png"))
    assert "plots/latent_arithmetic.png" in {a.path for a in client.list_artifacts(run_id, "plots")}


def test_a_flat_folder_has_no_labels_and_no_label_metrics(project: Path, mlflow_uri: str) -> None:
    write_faces(project / "faces", 80, seed=1)
    config = load_config("params.yaml", {"data.image_dir": str(project / "faces"), "train.epochs": 1})

    run_id, metrics = run_all(config)

    assert json.loads(Path("data/processed/meta.json").read_text())["class_names"] == []
    assert MlflowClient(mlflow_uri).get_run(run_id).info.status == "FINISHED"
    assert not any(key.startswith("latent_") for key in metrics)
    plots = {p.name for p in Path("reports/plots").glob("*.png")}
    assert "latent_space.png" in plots and "latent_arithmetic.png" not in plots
