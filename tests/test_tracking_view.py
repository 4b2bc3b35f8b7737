"""The saved runs-table view shows the headline metrics under the names the latest stage's params give them."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.tracking.experiments import open_experiment
from vaelab.tracking.view import VIEW_TAG


def _selected_columns(client: MlflowClient, experiment_id: str) -> list[str]:
    saved = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    return json.loads(saved["state"])["selectedColumns"]


def test_the_view_follows_the_metric_names_of_the_params(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    binarized = with_overrides(Config(), {"data.binarize": "dynamic", "evaluate.nll_samples": 1000})
    experiment_id = open_experiment("view-test", mlflow_uri, binarized)
    swept = ["params.`train.z_dim`", "params.`train.r_loss_factor`", "params.`train.learning_rate`"]
    assert _selected_columns(client, experiment_id) == [
        "metrics.`test_neg_elbo_k1_binarized_nats`",
        "metrics.`test_nll_k1000_binarized_nats`",
        "metrics.`sample_fid_classifier`",
        *swept,
    ]
    assert open_experiment("view-test", mlflow_uri) == experiment_id  # no params: params.yaml's defaults
    assert _selected_columns(client, experiment_id) == [
        "metrics.`test_neg_elbo_k1_grayscale_nats`",
        "metrics.`test_nll_k100_grayscale_nats`",
        "metrics.`sample_fid_classifier`",
        *swept,
    ]


def test_the_view_holds_charts_comparing_losses_headline_metrics_and_swept_params(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    experiment_id = open_experiment("chart-test", mlflow_uri, with_overrides(Config(), {"evaluate.nll_samples": 1000}))
    state = json.loads(json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])["state"])

    [section] = state["compareRunSections"]
    charts = state["compareRunCharts"]
    assert {chart["metricSectionId"] for chart in charts} == {section["uuid"]}
    assert len({chart["uuid"] for chart in charts}) == len(charts)
    by_type: dict[str, list[dict]] = {}
    for chart in charts:
        by_type.setdefault(chart["type"], []).append(chart)
    assert [chart["selectedMetricKeys"] for chart in by_type["LINE"]] == [
        ["loss", "val_loss"],
        ["reconstruction_loss", "val_reconstruction_loss"],
        ["kl_loss", "val_kl_loss"],
    ]
    assert [chart["metricKey"] for chart in by_type["BAR"]] == [
        "test_neg_elbo_k1_grayscale_nats",
        "test_nll_k1000_grayscale_nats",
        "sample_fid_classifier",
    ]
    [parallel] = by_type["PARALLEL"]
    assert parallel["selectedParams"] == ["train.z_dim", "train.r_loss_factor", "train.learning_rate"]
    assert parallel["selectedMetrics"] == ["test_nll_k1000_grayscale_nats"]
