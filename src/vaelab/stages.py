"""The pipeline stages as functions of a validated config.

pipeline/<stage>.py and `vaelab <stage>` call these; tests call them directly on small data.
Heavy libraries are imported inside each stage so `vaelab download` never loads TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config.schema import Config
from vaelab.files import write_json

if TYPE_CHECKING:
    from vaelab.model import VAE

log = logging.getLogger(__name__)


def run_download(config: Config) -> Path:
    from vaelab.data.download import download
    from vaelab.data.sources import DATASETS, IMAGE_FOLDER

    if config.data.dataset == IMAGE_FOLDER:
        from vaelab.data.folder import record_folder

        return record_folder(config.data.image_dir, config.paths.raw)
    return download(DATASETS[config.data.dataset], config.paths.raw)


def run_preprocess(config: Config) -> dict:
    from vaelab.data.preprocess import preprocess

    return preprocess(config.paths.raw / config.data.dataset, config.paths.processed, config.data, config.base.seed)


def run_train(config: Config) -> str | None:
    """Train (resuming an interrupted run), save the model and history, and return the MLflow run id.

    In a cluster of workers (see :mod:`vaelab.workers`) only the chief does all that; the other workers
    train their share of every batch and return None.
    """
    from vaelab.data.processed import check_made_from
    from vaelab.distribute import is_chief
    from vaelab.workers import train_as_worker

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads
    if not is_chief():
        train_as_worker(config)
        return None

    from vaelab import precision
    from vaelab.archives import save_keras_model
    from vaelab.data.processed import load_splits, split_sizes
    from vaelab.history import write_history
    from vaelab.tracking import runs
    from vaelab.tracking.epochs import MlflowEpochLogger, log_missing_epochs
    from vaelab.tracking.export import log_generative_model, model_settings
    from vaelab.tracking.notes import describe_run
    from vaelab.tracking.run_info import write_run_info
    from vaelab.training import clear_checkpoint, read_checkpoint, train

    splits = load_splits(config.paths.processed)
    checkpoint_dir = config.paths.checkpoints / "train"
    state = read_checkpoint(checkpoint_dir, config, splits.image_shape)
    resumed_run_id = state["meta"].get("run_id") if state else None
    if state and resumed_run_id:  # a run id comes only from a state; testing both narrows state for the type checker
        log.info("resuming MLflow run %s from epoch %d", resumed_run_id, state["epoch"])

    with runs.start_run(config, run_id=resumed_run_id, system_metrics=True) as run:
        run_id = run.info.run_id
        if state and resumed_run_id:
            # A kill between saving an epoch's checkpoint and logging it leaves that epoch out of the run.
            log_missing_epochs(run_id, state["history"])
        else:
            manifest = config.paths.raw / config.data.dataset / "manifest.json"
            if manifest.exists():
                runs.log_dataset_manifest(manifest)
            runs.log_datasets(splits, config.paths.processed, manifest)
            runs.set_description(describe_run(config, split_sizes(splits)))
        result = train(
            config,
            splits,
            checkpoint_dir=checkpoint_dir,
            callbacks=[MlflowEpochLogger()],
            checkpoint_meta={"run_id": run_id},
        )
        save_keras_model(result.model, config.paths.model)
        runs.set_tags({precision.RUN_TAG: result.precision})
        write_history(config.paths.history, result.history)
        runs.log_artifact(config.paths.history)
        if Path("params.yaml").exists():
            runs.log_artifact(Path("params.yaml"))
        log_generative_model(result.model, model_settings(result.model, config.data.dataset, config.data.binarize))
        write_run_info(config.paths.run_info, run_id)
    clear_checkpoint(checkpoint_dir)
    return run_id


def run_classifier(config: Config) -> dict[str, float]:
    """Train the sample-judging CNN; save it in the paths.classifier folder and its test accuracy in
    paths.classifier_metrics. Data without labels gets a note instead, so the pipeline still runs."""
    from vaelab.data.processed import check_made_from

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads

    from vaelab.archives import save_keras_model
    from vaelab.data.processed import load_splits
    from vaelab.evaluation import classifier, real_features
    from vaelab.evaluation.classifier import CLASSIFIER_FILE, NO_LABELS_FILE
    from vaelab.files import ensure_dir, write_text

    splits = load_splits(config.paths.processed)
    folder = ensure_dir(config.paths.classifier)
    for old in (folder / CLASSIFIER_FILE, folder / NO_LABELS_FILE, folder / real_features.STATISTICS_FILE):
        old.unlink(missing_ok=True)
    if len(splits.class_names) < 2:
        note = f"{config.data.dataset} has no class labels: no classifier, no sample-quality metrics\n"
        write_text(folder / NO_LABELS_FILE, note)
        write_json(config.paths.classifier_metrics, {})
        log.info("no classifier trained: %s has no class labels", config.data.dataset)
        return {}
    dynamic = config.data.binarize == "dynamic"
    model = classifier.train_classifier(
        splits, config.classifier, config.base.seed, verbose=2, binarize_seed=config.base.seed if dynamic else None
    )
    # The real images' feature statistics come from the pass that scores the test accuracy: each evaluation
    # and sweep trial reads them instead of passing the images through the classifier again.
    statistics, probabilities = real_features.measure(model, {"val": splits.x_val, "test": splits.x_test})
    metrics = {"classifier_test_accuracy": classifier.accuracy(probabilities["test"], splits.y_test)}
    log.info("classifier test accuracy: %.4f", metrics["classifier_test_accuracy"])
    real_features.save(folder, statistics)
    save_keras_model(model, folder / CLASSIFIER_FILE)
    write_json(config.paths.classifier_metrics, metrics)
    return metrics


def run_evaluate(config: Config) -> dict[str, float]:
    """Test metrics into paths.metrics and PNGs into paths.plots, all added to the training's MLflow run."""
    from vaelab.data.processed import check_made_from

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads

    import keras

    import vaelab.model  # noqa: F401 - registers the custom layers that load_model looks up
    from vaelab.data.processed import load_splits, split_sizes
    from vaelab.errors import DataError, first_line
    from vaelab.evaluation.report import test_metrics, write_plots
    from vaelab.tracking import runs
    from vaelab.tracking.notes import describe_run
    from vaelab.tracking.registry import register_evaluated_model
    from vaelab.tracking.run_info import read_run_info

    run_id = read_run_info(config.paths.run_info)
    splits = load_splits(config.paths.processed)
    try:
        model: VAE = keras.models.load_model(config.paths.model, safe_mode=True)
    except (OSError, ValueError) as err:
        raise DataError(f"{config.paths.model}: cannot load the model ({first_line(err)}); re-run `dvc repro train`") from None

    with runs.start_run(config, run_id=run_id):
        metrics = test_metrics(model, splits, config)
        write_json(config.paths.metrics, metrics)
        written = write_plots(model, splits, config)
        runs.log_metrics(metrics)
        runs.set_description(describe_run(config, split_sizes(splits), metrics))
        runs.log_artifact(config.paths.metrics)
        for png in written:
            runs.log_artifact(png, "plots")
        register_evaluated_model(run_id, config, metrics)
    return metrics
