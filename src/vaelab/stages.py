"""The pipeline stages as functions of a validated config.

pipeline/<stage>.py and `vaelab <stage>` call these; tests call them directly on small data.
Heavy libraries are imported inside each stage so `vaelab download` never loads TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vaelab.config import Config
from vaelab.io import write_json

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

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads
    if not is_chief():
        return _train_as_worker(config)

    from vaelab import tracking
    from vaelab.data.processed import load_splits, split_sizes
    from vaelab.io import atomic_path, write_text
    from vaelab.tracking.notes import describe_run
    from vaelab.training import clear_checkpoint, read_checkpoint, train

    splits = load_splits(config.paths.processed)
    checkpoint_dir = config.paths.checkpoints / "train"
    state = read_checkpoint(checkpoint_dir, config, splits.image_shape)
    resumed_run_id = state["meta"].get("run_id") if state else None
    if resumed_run_id:
        log.info("resuming MLflow run %s from epoch %d", resumed_run_id, state["epoch"])

    with tracking.start_run(config, run_id=resumed_run_id, system_metrics=True) as run:
        run_id = run.info.run_id
        if resumed_run_id:
            # A kill between saving an epoch's checkpoint and logging it leaves that epoch out of the run.
            tracking.log_missing_epochs(run_id, state["history"])
        else:
            manifest = config.paths.raw / config.data.dataset / "manifest.json"
            if manifest.exists():
                tracking.log_dataset_manifest(manifest)
            tracking.log_datasets(splits, config.paths.processed, manifest)
            tracking.set_description(describe_run(config, split_sizes(splits)))
        result = train(
            config,
            splits,
            checkpoint_dir=checkpoint_dir,
            callbacks=[tracking.MlflowEpochLogger()],
            checkpoint_meta={"run_id": run_id},
        )
        with atomic_path(config.paths.model) as tmp:
            result.model.save(tmp)
        write_text(config.paths.history, _history_csv(result.history))
        tracking.log_artifact(config.paths.history)
        if Path("params.yaml").exists():
            tracking.log_artifact(Path("params.yaml"))
        tracking.log_keras_model(result.model, splits.x_val[:4])
        tracking.write_run_info(config.paths.run_info, run_id)
    clear_checkpoint(checkpoint_dir)
    return run_id


def _train_as_worker(config: Config) -> None:
    """A cluster's other worker: reads the chief's checkpoint to resume, but logs and writes nothing the pipeline reads."""
    from vaelab.data.processed import load_splits
    from vaelab.distribute import worker_label
    from vaelab.training import train

    # verbose=0: the chief reports the epochs; the same lines again from every worker would only repeat them.
    train(config, load_splits(config.paths.processed), checkpoint_dir=config.paths.checkpoints / "train", verbose=0)
    log.info("%s: training done; the chief logs the run and writes the outputs", worker_label())


CLASSIFIER_FILE = "classifier.keras"  # inside paths.classifier
NO_LABELS_FILE = "NO_LABELS.txt"  # written there instead when the data has no class labels


def run_classifier(config: Config) -> dict[str, float]:
    """Train the sample-judging CNN; save it in the paths.classifier folder and its test accuracy in
    paths.classifier_metrics. Data without labels gets a note instead, so the pipeline still runs."""
    from vaelab.data.processed import check_made_from

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads

    from vaelab import classifier
    from vaelab.data.processed import load_splits
    from vaelab.io import atomic_path, ensure_dir, write_text

    splits = load_splits(config.paths.processed)
    folder = ensure_dir(config.paths.classifier)
    for old in (folder / CLASSIFIER_FILE, folder / NO_LABELS_FILE):
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
    metrics = {"classifier_test_accuracy": classifier.accuracy(model, splits.x_test, splits.y_test)}
    log.info("classifier test accuracy: %.4f", metrics["classifier_test_accuracy"])
    with atomic_path(folder / CLASSIFIER_FILE) as tmp:
        model.save(tmp)
    write_json(config.paths.classifier_metrics, metrics)
    return metrics


def load_classifier(config: Config, splits):
    """The classifier stage's model if there is one that fits ``splits``; else None, with a log line saying why."""
    import keras

    from vaelab import classifier

    path = config.paths.classifier / CLASSIFIER_FILE
    if len(splits.class_names) < 2:
        log.info("sample quality skipped: the dataset has no class labels to train a classifier on")
        return None
    if not path.exists():
        log.info("sample quality skipped: no classifier at %s (run `dvc repro classifier`)", path)
        return None
    model = keras.models.load_model(path, safe_mode=True)
    mismatch = classifier.accepts(model, splits.image_shape, len(splits.class_names))
    if mismatch:
        log.warning("sample quality skipped: the classifier at %s does not fit this data: %s", path, mismatch)
        return None
    return model


def _generator_metrics(model, splits, config: Config) -> dict[str, float]:
    """Test NLL (importance-sampled) and, given a classifier, the quality of samples from the prior."""
    import json

    from vaelab import likelihood, quality
    from vaelab.metric_names import evaluate_nll_metric

    ev, seed = config.evaluate, config.base.seed
    nll = likelihood.estimate_nll(model, splits.x_test, ev.nll_samples, ev.nll_images, seed, ev.batch_size)
    metrics = {evaluate_nll_metric(config): nll}
    judge = load_classifier(config, splits)
    if judge is not None:
        binary = config.data.binarize != "none"
        metrics.update(
            quality.sample_quality(judge, model, splits.x_test, ev.quality_samples, seed, ev.batch_size, binary=binary)
        )
        accuracy_file = config.paths.classifier_metrics
        recorded = json.loads(accuracy_file.read_text(encoding="utf-8")) if accuracy_file.exists() else {}
        if "classifier_test_accuracy" in recorded:
            metrics["classifier_test_accuracy"] = float(recorded["classifier_test_accuracy"])
    return metrics


def run_evaluate(config: Config) -> dict[str, float]:
    """Test metrics into paths.metrics and PNGs into paths.plots, all added to the training's MLflow run."""
    from vaelab.data.processed import check_made_from

    check_made_from(config.paths.processed, config.split_settings())  # first: before TensorFlow loads

    import keras

    import vaelab.model  # noqa: F401 - registers the custom layers that load_model looks up
    from vaelab import evaluation, tracking
    from vaelab.data.processed import load_splits, split_sizes
    from vaelab.errors import DataError
    from vaelab.tracking.notes import describe_run
    from vaelab.tracking.registry import register_evaluated_model

    run_id = tracking.read_run_info(config.paths.run_info)
    splits = load_splits(config.paths.processed)
    try:
        model = keras.models.load_model(config.paths.model, safe_mode=True)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataError(f"{config.paths.model}: cannot load the model ({reason}); re-run `dvc repro train`") from None

    with tracking.start_run(config, run_id=run_id):
        metrics = evaluation.evaluate(model, splits, config)
        metrics.update(_generator_metrics(model, splits, config))
        write_json(config.paths.metrics, metrics)
        written = _write_plots(model, splits, config)
        tracking.log_metrics(metrics)
        tracking.set_description(describe_run(config, split_sizes(splits), metrics))
        tracking.log_artifact(config.paths.metrics)
        for png in written:
            tracking.log_artifact(png, "plots")
        register_evaluated_model(run_id, config, metrics)
    return metrics


def _write_plots(model, splits, config: Config) -> list[Path]:
    from vaelab import evaluation, plots
    from vaelab.io import ensure_dir

    ev = config.evaluate
    out = ensure_dir(config.paths.plots)
    for old in out.glob("*.png"):  # stale pictures of an earlier run (e.g. a manifold when z_dim changed)
        old.unlink()
    seed = config.base.seed
    originals = splits.x_test[: ev.n_reconstructions]
    plots.plot_reconstructions(originals, evaluation.reconstruct(model, originals, ev.batch_size), out / "reconstructions.png")
    n = min(ev.latent_points, len(splits.x_test))
    mu = evaluation.encode_means(model, splits.x_test, ev.batch_size, limit=n)
    labels = splits.y_test[:n] if splits.labelled else None
    plots.plot_latent_space(mu, labels, splits.class_names, out / "latent_space.png")
    if len(splits.class_names) == 2:  # two subfolders of an image folder: the step from one to the other
        shifted = evaluation.latent_arithmetic(model, splits.x_test, mu, labels, plots.ARITHMETIC_STRENGTHS, ev.batch_size)
        plots.plot_latent_arithmetic(shifted, plots.ARITHMETIC_STRENGTHS, splits.class_names, out / "latent_arithmetic.png")
    plots.plot_samples(evaluation.sample_prior(model, ev.sample_grid**2, seed), out / "samples.png")
    if mu.shape[1] == 2:
        plots.plot_manifold(evaluation.decode_grid(model, ev.manifold_grid), out / "manifold.png")
    if config.paths.history.exists():
        plots.plot_loss_curves(_read_history(config.paths.history), out / "loss_curves.png")
    return sorted(out.glob("*.png"))


def _history_csv(history: list[dict]) -> str:
    columns = list(history[0]) if history else ["epoch"]
    lines = [",".join(columns)]
    lines += [",".join(_fmt(row.get(c)) for c in columns) for row in history]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "" if value is None else (str(value) if isinstance(value, int) else f"{value:.8g}")


def _read_history(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as handle:
        return [{k: (float(v) if v else None) for k, v in row.items()} for row in csv.DictReader(handle)]
