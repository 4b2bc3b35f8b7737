"""The sample-judging classifier: its layers, its compatibility check, and the real classifier and evaluate
stages on tiny data with a real SQLite MLflow store (sample quality and NLL in metrics.json and the run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from tiny import TINY

from vaelab.config.load import load_config
from vaelab.config.schema import ClassifierSection
from vaelab.data.processed import write_splits
from vaelab.evaluation.classifier import FEATURE_LAYER, accepts, build_classifier, features_and_probabilities

SMALL_CLASSIFIER = ClassifierSection(**TINY["classifier"])


def test_layers_and_outputs() -> None:
    model = build_classifier((28, 28, 1), 10, ClassifierSection())
    assert model.output.shape[1:] == (10,)
    assert model.get_layer(FEATURE_LAYER).output.shape[1:] == (128,)
    # Two blocks of two convolutions, each block halving the size: 28 -> 14 -> 7.
    assert model.get_layer("pool_1").output.shape[1:] == (7, 7, 64)
    features, probabilities = features_and_probabilities(model, np.zeros((5, 28, 28, 1), "float32"), batch_size=2)
    assert features.shape == (5, 128) and probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    empty_features, empty_probabilities = features_and_probabilities(model, np.zeros((0, 28, 28, 1), "float32"))
    assert empty_features.shape == (0, 128) and empty_probabilities.shape == (0, 10)


def test_odd_image_sizes_and_class_counts() -> None:
    model = build_classifier((5, 7, 3), 2, SMALL_CLASSIFIER)
    assert model.get_layer("pool_1").output.shape[1:] == (2, 2, 8)  # 5x7 -> 3x4 -> 2x2 with "same" pooling
    with pytest.raises(ValueError, match="at least 2 classes; received n_classes=1"):
        build_classifier((28, 28, 1), 1, SMALL_CLASSIFIER)


def test_accepts_names_what_does_not_fit() -> None:
    model = build_classifier((12, 12, 1), 3, SMALL_CLASSIFIER)
    assert accepts(model, (12, 12, 1), 3) is None
    assert accepts(model, (28, 28, 1), 3) == "it takes images of shape [12, 12, 1], the data has [28, 28, 1]"
    assert accepts(model, (12, 12, 1), 10) == "it predicts 3 classes, the data has 10"


# --- the stages on tiny data -------------------------------------------------------------------------


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project(
        {
            "train": {"epochs": 2},
            "evaluate": {"nll_samples": 8, "nll_images": 40, "quality_samples": 300},  # K = 8: see the IWAE bound below
            "classifier": {"epochs": 3},
        }
    )


QUALITY = {"sample_fid_classifier", "sample_confidence", "sample_label_entropy_bits", "classifier_test_accuracy"}


@pytest.mark.slow
def test_classifier_stage_then_evaluate_reports_sample_quality_and_nll(project: Path, mlflow_uri: str) -> None:
    from vaelab.stages import run_classifier, run_evaluate, run_train

    config = load_config("params.yaml")
    written = run_classifier(config)
    assert Path("models/classifier/classifier.keras").stat().st_size > 0
    assert json.loads(Path("reports/classifier_metrics.json").read_text()) == written
    assert written["classifier_test_accuracy"] > 0.95  # three bars are easy

    run_id = run_train(config)
    metrics = run_evaluate(config)
    assert set(metrics) >= QUALITY | {"test_nll_k8_grayscale_nats", "test_neg_elbo_k1_grayscale_nats"}
    assert metrics["classifier_test_accuracy"] == written["classifier_test_accuracy"]
    assert 0 <= metrics["sample_label_entropy_bits"] <= np.log2(3) + 1e-9
    assert 1 / 3 <= metrics["sample_confidence"] <= 1
    assert metrics["sample_fid_classifier"] > 0
    # Both estimate -log p(x) from above; the importance-sampled one (K=8) is at most the negative ELBO in expectation.
    assert 0 < metrics["test_nll_k8_grayscale_nats"] < metrics["test_neg_elbo_k1_grayscale_nats"] + 1.0
    assert json.loads(Path("reports/metrics.json").read_text()) == metrics
    assert run_id is not None  # one process is its own chief
    logged = MlflowClient(mlflow_uri).get_run(run_id).data.metrics
    for key in QUALITY | {"test_nll_k8_grayscale_nats"}:
        assert logged[key] == pytest.approx(metrics[key]), key


@pytest.mark.slow
def test_evaluate_reads_the_real_images_statistics_the_classifier_stage_saved(project: Path, mlflow_uri: str) -> None:
    from vaelab.data.processed import load_splits
    from vaelab.evaluation import real_features
    from vaelab.stages import run_classifier, run_evaluate, run_train

    config = load_config("params.yaml", {"train.epochs": 1})
    run_classifier(config)
    run_train(config)
    saved = Path("models/classifier") / real_features.STATISTICS_FILE
    splits = load_splits(config.paths.processed)
    for split, images in (("val", splits.x_val), ("test", splits.x_test)):
        assert real_features.load(saved.parent, split, images) is not None, split
    with_statistics = run_evaluate(config)["sample_fid_classifier"]

    saved.unlink()  # as before the classifier stage saved them: the test images through the classifier
    assert run_evaluate(config)["sample_fid_classifier"] == with_statistics

    # Statistics of other images are not used: a shifted mean under the test images' digest changes the figure,
    # the same mean under another digest does not.
    (mean, covariance), _ = real_features.measure(_judge(), {"test": splits.x_test})[0]["test"]
    real_features.save(saved.parent, {"test": ((mean + 1.0, covariance), real_features.images_digest(splits.x_test))})
    assert run_evaluate(config)["sample_fid_classifier"] != pytest.approx(with_statistics, rel=1e-3)
    real_features.save(saved.parent, {"test": ((mean + 1.0, covariance), real_features.images_digest(splits.x_test[:-1]))})
    assert run_evaluate(config)["sample_fid_classifier"] == with_statistics


def _judge():
    import keras

    return keras.models.load_model("models/classifier/classifier.keras", safe_mode=True)


@pytest.mark.slow
def test_evaluate_without_a_classifier_skips_sample_quality_with_a_log_line(
    project: Path, mlflow_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    from vaelab.stages import run_evaluate, run_train

    config = load_config("params.yaml", {"train.epochs": 1})
    run_train(config)
    with caplog.at_level(logging.INFO, logger="vaelab.evaluation.report"):
        metrics = run_evaluate(config)
    assert "test_nll_k8_grayscale_nats" in metrics and not QUALITY & set(metrics)
    assert "sample quality skipped: no classifier at models/classifier/classifier.keras (run `dvc repro classifier`)" in caplog.text

    # A classifier for other data (12x12 images) is not used on 28x28 ones.
    Path("models/classifier").mkdir()
    build_classifier((12, 12, 1), 3, SMALL_CLASSIFIER).save("models/classifier/classifier.keras")
    with caplog.at_level(logging.INFO, logger="vaelab.evaluation.report"):
        metrics = run_evaluate(config)
    assert not QUALITY & set(metrics)
    assert "does not fit this data: it takes images of shape [12, 12, 1], the data has [28, 28, 1]" in caplog.text


def test_data_without_labels_gets_a_note_instead_of_a_classifier(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vaelab.evaluation.report import load_classifier
    from vaelab.stages import run_classifier

    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 8), ("val", 2), ("test", 4)):
        arrays[f"x_{split}"] = rng.uniform(0, 1, (n, 28, 28, 1)).astype("float32")
        arrays[f"y_{split}"] = np.zeros(n, "uint8")
    write_splits("data/processed", arrays, {"dataset": "mnist", "image_shape": [28, 28, 1], "class_names": []})
    config = load_config("params.yaml")

    assert run_classifier(config) == {}
    assert not Path("models/classifier/classifier.keras").exists()
    assert Path("models/classifier/NO_LABELS.txt").read_text() == "mnist has no class labels: no classifier, no sample-quality metrics\n"
    assert json.loads(Path("reports/classifier_metrics.json").read_text()) == {}
    from vaelab.data.processed import load_splits

    with caplog.at_level(logging.INFO, logger="vaelab.evaluation.report"):
        assert load_classifier(config, load_splits("data/processed")) is None
    assert "sample quality skipped: the dataset has no class labels to train a classifier on" in caplog.text
