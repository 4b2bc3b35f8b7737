"""The four pipeline stages as functions of a validated config.

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
    from vaelab.data.sources import DATASETS

    return download(DATASETS[config.data.dataset], config.paths.raw)


def run_preprocess(config: Config) -> dict:
    from vaelab.data.preprocess import preprocess

    return preprocess(config.paths.raw / config.data.dataset, config.paths.processed, config.data, config.base.seed)


def run_train(config: Config) -> str:
    """Train (resuming an interrupted run), save the model and history, and return the MLflow run id."""
    from vaelab import tracking
    from vaelab.data.processed import load_splits
    from vaelab.io import atomic_path, write_text
    from vaelab.training import clear_checkpoint, read_checkpoint, train

    splits = load_splits(config.paths.processed)
    checkpoint_dir = config.paths.checkpoints / "train"
    state = read_checkpoint(checkpoint_dir, config, splits.image_shape)
    resumed_run_id = state["meta"].get("run_id") if state else None
    if resumed_run_id:
        log.info("resuming MLflow run %s from epoch %d", resumed_run_id, state["epoch"])

    with tracking.start_run(config, run_id=resumed_run_id) as run:
        run_id = run.info.run_id
        if not resumed_run_id:
            manifest = config.paths.raw / config.data.dataset / "manifest.json"
            if manifest.exists():
                tracking.log_dataset_manifest(manifest)
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


def run_evaluate(config: Config) -> dict[str, float]:
    """Test metrics into paths.metrics and PNGs into paths.plots, all added to the training's MLflow run."""
    import keras

    import vaelab.model  # noqa: F401 - registers the custom layers that load_model looks up
    from vaelab import evaluation, tracking
    from vaelab.data.processed import load_splits
    from vaelab.errors import DataError

    run_id = tracking.read_run_info(config.paths.run_info)
    splits = load_splits(config.paths.processed)
    try:
        model = keras.models.load_model(config.paths.model, safe_mode=True)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataError(f"{config.paths.model}: cannot load the model ({reason}); re-run `dvc repro train`") from None

    with tracking.start_run(config, run_id=run_id):
        metrics = evaluation.evaluate(model, splits, config)
        write_json(config.paths.metrics, metrics)
        written = _write_plots(model, splits, config)
        tracking.log_metrics(metrics)
        tracking.log_artifact(config.paths.metrics)
        for png in written:
            tracking.log_artifact(png, "plots")
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
    mu = evaluation.encode_means(model, splits.x_test[:n], ev.batch_size)
    plots.plot_latent_space(mu, splits.y_test[:n], splits.class_names, out / "latent_space.png")
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
