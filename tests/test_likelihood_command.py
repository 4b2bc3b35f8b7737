"""`vaelab likelihood`: the paper-grade NLL of the trained model, its metric name, its MLflow record and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from vaelab import likelihood_command
from vaelab.config.load import load_config
from vaelab.data.processed import load_splits
from vaelab.evaluation.likelihood import importance_sampled_nll, subset_indices
from vaelab.stages import run_train

K = 6
IMAGES = 40


@pytest.fixture
def trained(tiny_project) -> Path:
    folder = tiny_project({"data": {"binarize": "dynamic"}})
    run_train(load_config("params.yaml"))
    return folder


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as ended:
        likelihood_command.main(list(argv))
    code = ended.value.code
    assert isinstance(code, int), code  # main always exits with a number
    return code


def _expected(config) -> float:
    model = keras.models.load_model(config.paths.model, safe_mode=True)
    x_test = load_splits(config.paths.processed).x_test
    chosen = subset_indices(len(x_test), IMAGES, config.base.seed)
    return float(np.mean(importance_sampled_nll(model, x_test[chosen], K, config.base.seed, indices=chosen)))


def test_the_figure_is_the_estimators_named_by_k_and_data_and_logged_to_the_models_run(trained: Path) -> None:
    config = load_config("params.yaml")
    assert _run("--samples", str(K), "--images", str(IMAGES), "--batch", "16", "--out", "nll.json") == 0

    result = json.loads(Path("nll.json").read_text())
    name = f"test_nll_k{K}_binarized_nats"
    assert result[name] == pytest.approx(_expected(config), rel=1e-9)
    assert (result["importance_samples"], result["images"], result["binarize"]) == (K, IMAGES, "dynamic")
    assert result["standard_error_nats"] > 0
    assert not Path("nll.json.partial.npz").exists()

    run_id = json.loads(Path(config.paths.run_info).read_text())["run_id"]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics[name] == pytest.approx(result[name], rel=1e-12)
    assert run.info.status == "FINISHED"


def test_a_binarized_run_says_so_in_its_params_metrics_and_registered_model(trained: Path) -> None:
    from vaelab.stages import run_evaluate

    config = load_config("params.yaml")
    metrics = run_evaluate(config)
    k = config.evaluate.nll_samples
    assert {f"test_nll_k{k}_binarized_nats", "test_neg_elbo_k1_binarized_nats"} <= set(metrics)
    assert not any("grayscale" in name for name in metrics)
    assert json.loads(Path(config.paths.metrics).read_text()) == metrics

    client = mlflow.MlflowClient()
    run = client.get_run(json.loads(Path(config.paths.run_info).read_text())["run_id"])
    assert (run.data.params["data.binarize"], run.data.params["evaluate.nll_samples"]) == ("dynamic", str(k))
    assert run.data.metrics[f"test_nll_k{k}_binarized_nats"] == pytest.approx(metrics[f"test_nll_k{k}_binarized_nats"], rel=1e-12)
    assert "dynamically binarized" in run.data.tags["mlflow.note.content"]
    (version,) = client.search_model_versions("name = 'vaelab-mnist-binarized'")
    assert version.tags["nll_metric"] == f"test_nll_k{k}_binarized_nats"


def test_an_interrupted_estimate_resumes_to_the_uninterrupted_figure(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config("params.yaml")
    monkeypatch.setattr(likelihood_command, "SAVE_EVERY_SECONDS", 0.0)  # save after every block of images
    import vaelab.evaluation.likelihood as estimator  # the command imports the estimator when it runs: patch it at its source

    calls = {"n": 0}
    original = estimator.importance_sampled_nll

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third block
        return original(*args, **kwargs)

    monkeypatch.setattr(estimator, "importance_sampled_nll", interrupted)
    # --batch 2 with K=6 gives blocks of 8 images: two blocks (16 images) are saved before the interruption.
    assert _run("--samples", str(K), "--images", str(IMAGES), "--batch", "2", "--out", "nll.json", "--no-mlflow") == 130
    with np.load("nll.json.partial.npz") as saved:
        assert len(saved["nll"]) == 16
    assert not Path("nll.json").exists()

    monkeypatch.setattr(estimator, "importance_sampled_nll", original)
    assert _run("--samples", str(K), "--images", str(IMAGES), "--batch", "2", "--out", "nll.json", "--no-mlflow") == 0
    assert json.loads(Path("nll.json").read_text())[f"test_nll_k{K}_binarized_nats"] == pytest.approx(_expected(config), rel=1e-9)


def test_a_partial_file_of_other_settings_or_unreadable_is_not_reused(trained: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config("params.yaml")
    expected = pytest.approx(_expected(config), rel=1e-9)
    likelihood_command.Partial(Path("nll.json.partial.npz"), "another model").save([0.0] * 8)
    assert _run("--samples", str(K), "--images", str(IMAGES), "--out", "nll.json", "--no-mlflow") == 0
    assert "it was computed for another model, K, seed or image set" in caplog.text
    assert json.loads(Path("nll.json").read_text())[f"test_nll_k{K}_binarized_nats"] == expected

    Path("nll.json.partial.npz").write_bytes(b"")
    assert _run("--samples", str(K), "--images", str(IMAGES), "--out", "nll.json", "--no-mlflow") == 0
    assert "ignoring nll.json.partial.npz: unreadable" in caplog.text
    assert json.loads(Path("nll.json").read_text())[f"test_nll_k{K}_binarized_nats"] == expected


def test_no_model_is_one_line(tiny_project, capsys: pytest.CaptureFixture) -> None:
    tiny_project()
    assert _run("--samples", "5") == 2
    assert capsys.readouterr().err.strip() == "vaelab: error: models/vae.keras: no trained model; run `dvc repro train` first"


def test_bad_arguments_are_refused_by_argparse(capsys: pytest.CaptureFixture) -> None:
    assert _run("--samples", "0") == 2
    assert "argument --samples: 0 must be at least 1" in capsys.readouterr().err
    assert _run("--images", "some") == 2
    assert "argument --images: 'some' is not a whole number" in capsys.readouterr().err
