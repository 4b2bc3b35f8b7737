"""The evaluate stage's numbers and pictures for one trained model, from the modules of this package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config.schema import Config
from vaelab.files import ensure_dir, read_json

if TYPE_CHECKING:
    import keras

    from vaelab.data.processed import Splits
    from vaelab.model import VAE

log = logging.getLogger(__name__)


def test_metrics(model: VAE, splits: Splits, config: Config) -> dict[str, float]:
    """Every test metric: the test-set numbers, the test NLL and, given a classifier, the samples' quality."""
    from vaelab.evaluation import metrics

    return {**metrics.evaluate(model, splits, config), **_generator_metrics(model, splits, config)}


def load_classifier(config: Config, splits: Splits) -> keras.Model | None:
    """The classifier stage's model if there is one that fits ``splits``; else None, with a log line saying why."""
    import keras

    from vaelab.evaluation import classifier

    path = config.paths.classifier / classifier.CLASSIFIER_FILE
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


def write_plots(model: VAE, splits: Splits, config: Config) -> list[Path]:
    """The PNGs in ``paths.plots`` (after deleting the previous run's); returns their paths."""
    from vaelab.evaluation import metrics, plots
    from vaelab.history import read_history

    ev = config.evaluate
    out = ensure_dir(config.paths.plots)
    for old in out.glob("*.png"):  # stale pictures of an earlier run (e.g. a manifold when z_dim changed)
        old.unlink()
    seed = config.base.seed
    originals = splits.x_test[: ev.n_reconstructions]
    plots.plot_reconstructions(originals, metrics.reconstruct(model, originals, ev.batch_size), out / "reconstructions.png")
    n = min(ev.latent_points, len(splits.x_test))
    mu = metrics.encode_means(model, splits.x_test, ev.batch_size, limit=n)
    labels = splits.y_test[:n] if splits.labelled else None
    plots.plot_latent_space(mu, labels, splits.class_names, out / "latent_space.png")
    if len(splits.class_names) == 2:  # two subfolders of an image folder: the step from one to the other
        # The labels above: two class names make the split labelled.
        shifted = metrics.latent_arithmetic(model, splits.x_test, mu, splits.y_test[:n], plots.ARITHMETIC_STRENGTHS, ev.batch_size)
        plots.plot_latent_arithmetic(shifted, plots.ARITHMETIC_STRENGTHS, splits.class_names, out / "latent_arithmetic.png")
    plots.plot_samples(metrics.sample_prior(model, ev.sample_grid**2, seed), out / "samples.png", prior=model.prior)
    if mu.shape[1] == 2:
        plots.plot_manifold(metrics.decode_grid(model, ev.manifold_grid), out / "manifold.png")
    if config.paths.history.exists():
        plots.plot_loss_curves(read_history(config.paths.history), out / "loss_curves.png")
    return sorted(out.glob("*.png"))


def _generator_metrics(model: VAE, splits: Splits, config: Config) -> dict[str, float]:
    """Test NLL (importance-sampled) and, given a classifier, the quality of samples from the prior."""
    from vaelab.evaluation import likelihood, quality, real_features
    from vaelab.metric_names import evaluate_nll_metric

    ev, seed = config.evaluate, config.base.seed
    nll = likelihood.estimate_nll(model, splits.x_test, ev.nll_samples, ev.nll_images, seed, ev.batch_size)
    scores = {evaluate_nll_metric(config): nll}
    judge = load_classifier(config, splits)
    if judge is not None:
        binary = config.data.binarize != "none"
        real = real_features.load(config.paths.classifier, "test", splits.x_test)
        scores.update(
            quality.sample_quality(
                judge, model, splits.x_test, ev.quality_samples, seed, ev.batch_size, binary=binary, real_statistics=real
            )
        )
        accuracy_file = config.paths.classifier_metrics
        recorded = read_json(accuracy_file, "run the classifier stage again") if accuracy_file.exists() else {}
        if "classifier_test_accuracy" in recorded:
            scores["classifier_test_accuracy"] = float(recorded["classifier_test_accuracy"])
    return scores
