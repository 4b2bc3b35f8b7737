"""`vaelab compare` on a real SQLite MLflow store holding three runs (and runs it must leave out)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from vaelab.cli import main
from vaelab.compare import compare, runs_table
from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.tracking.queries import experiment_runs
from vaelab.tracking.runs import log_metrics, start_run

RUNS = [  # z_dim, r_loss_factor, metrics
    (2, 1000.0, {"test_nll_k100_grayscale_nats": 140.5, "test_neg_elbo_k1_grayscale_nats": 145.25, "latent_knn_accuracy": 0.91}),
    (8, 1000.0, {"test_nll_k100_grayscale_nats": 101.0, "test_neg_elbo_k1_grayscale_nats": 106.5, "latent_knn_accuracy": 0.95}),
    (8, 100.0, {"test_nll_k100_grayscale_nats": 98.75, "test_neg_elbo_k1_grayscale_nats": 103.0}),
]
METRICS = ["test_nll_k100_grayscale_nats", "test_neg_elbo_k1_grayscale_nats", "latent_knn_accuracy"]


@pytest.fixture
def store(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    ids = []
    for z_dim, r_loss_factor, metrics in RUNS:
        config = with_overrides(Config(), {"train.z_dim": z_dim, "train.r_loss_factor": r_loss_factor})
        with start_run(config) as run:
            log_metrics(metrics)
            ids.append(run.info.run_id)
    with start_run(Config()):  # a run still training: no test metrics yet
        log_metrics({"loss": 1.0}, step=1)
    with start_run(with_overrides(Config(), {"base.experiment": "other"})):
        log_metrics({"test_nll_k100_grayscale_nats": 1.0})
    return ids


def test_table_has_one_row_per_run_with_the_metrics(store: list[str]) -> None:
    runs = experiment_runs("vaelab-mnist")
    assert len(runs) == 4
    table = runs_table(runs, METRICS)

    assert list(table.index) == store
    assert list(table.columns) == ["run", "status", "train.z_dim", "train.r_loss_factor", *METRICS]
    assert list(table["run"]) == [f"mnist-z{z}-r{r:g}-{run_id[:6]}" for (z, r, _), run_id in zip(RUNS, store, strict=True)]
    assert list(table["status"]) == ["FINISHED"] * 3
    assert list(table["train.z_dim"]) == [2, 8, 8]
    assert list(table["train.r_loss_factor"]) == [1000.0, 1000.0, 100.0]
    assert list(table["test_nll_k100_grayscale_nats"]) == [140.5, 101.0, 98.75]
    assert table["latent_knn_accuracy"].iloc[:2].tolist() == [0.91, 0.95]
    assert math.isnan(table["latent_knn_accuracy"].iloc[2])


def test_compare_writes_csv_png_and_html(store: list[str], tmp_path: Path) -> None:
    table = compare("vaelab-mnist", METRICS, tmp_path / "out")

    assert len(table) == 3
    read_back = pd.read_csv(tmp_path / "out/compare.csv", index_col="run_id")
    assert list(read_back.index) == store
    assert read_back["test_neg_elbo_k1_grayscale_nats"].tolist() == [145.25, 106.5, 103.0]
    png = (tmp_path / "out/compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and 10_000 < len(png) < 300_000
    page = (tmp_path / "out/compare.html").read_text()
    assert "<title>MLflow experiment vaelab-mnist</title>" in page
    assert all(name in page for name in table["run"]) and "<td>98.75</td>" in page
    assert "src='data:image/png;base64," in page


def test_cli_prints_the_table_and_names_missing_things(store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["compare", "--experiment", "vaelab-mnist", "--metrics", "test_nll_k100_grayscale_nats, latent_knn_accuracy", "--out", "cmp"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "run",
        "status",
        "train.z_dim",
        "train.r_loss_factor",
        "test_nll_k100_grayscale_nats",
        "latent_knn_accuracy",
    ]
    assert "140.5" in out and "98.75" in out
    assert (tmp_path / "cmp/compare.png").exists()

    # Without --metrics (and without a params file here): the default params' headline names, K = 100, grayscale.
    with pytest.raises(SystemExit) as done:
        main(["compare", "--experiment", "vaelab-mnist", "--out", "cmp"])
    assert done.value.code == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "run",
        "status",
        "train.z_dim",
        "train.r_loss_factor",
        "test_nll_k100_grayscale_nats",
        "test_neg_elbo_k1_grayscale_nats",
        "sample_fid_classifier",
        "latent_knn_accuracy",
    ]

    with pytest.raises(SystemExit) as done:
        main(["compare", "--experiment", "nope", "--out", "cmp"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: no MLflow experiment 'nope' in sqlite:///")
    assert "experiments there: Default, other, vaelab-mnist (set MLFLOW_TRACKING_URI" in err

    with pytest.raises(SystemExit) as done:
        main(["compare", "--experiment", "vaelab-mnist", "--metrics", "sample_fid_classifier", "--out", "cmp"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: none of the 4 runs of experiment 'vaelab-mnist' has any of the metrics sample_fid_classifier;")
    assert "metrics logged there: latent_knn_accuracy, loss, test_neg_elbo_k1_grayscale_nats, test_nll_k100_grayscale_nats" in err
