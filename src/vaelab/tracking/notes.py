"""The run's description (MLflow's ``mlflow.note.content``): what was trained, on what, and how it scored.

Shown at the top of a run's page and as a tooltip in the runs table; markdown.
"""

from __future__ import annotations

from collections.abc import Mapping

from vaelab.config.schema import Config
from vaelab.metric_names import data_label, evaluate_neg_elbo_metric, evaluate_nll_metric


def describe_run(config: Config, sizes: Mapping[str, int], metrics: Mapping[str, float] | None = None) -> str:
    """``sizes``: images per split (``train``, ``val``, ``test``); ``metrics``: the evaluate stage's, if any."""
    t = config.train
    lines = [
        f"Convolutional VAE (chapter 3 of *Generative Deep Learning*) on **{config.data.dataset}**{_binarized(config)}: "
        f"{sizes['train']:,} training and {sizes['val']:,} validation images, {t.epochs} epochs, "
        f"z_dim {t.z_dim}, {t.reconstruction} reconstruction weighted {t.r_loss_factor:g}, learning rate {t.learning_rate:g}."
    ]
    # The headline figures, in the order a reader looks for them.
    headline = (
        (evaluate_neg_elbo_metric(config), "negative ELBO"),
        (evaluate_nll_metric(config), "importance-sampled NLL"),
        ("sample_fid_classifier", "sample FID (classifier features)"),
    )
    shown = [(label, metrics[key]) for key, label in headline if metrics and key in metrics]
    if shown and metrics:  # metrics is never None when shown has figures; saying so narrows its type
        figures = ", ".join(f"{label} {value:.2f}" for label, value in shown)
        detail = ""
        if evaluate_nll_metric(config) in metrics:
            ev = config.evaluate
            images = sizes["test"] if ev.nll_images is None else min(ev.nll_images, sizes["test"])
            detail = f" (NLL with K={ev.nll_samples} importance samples on {images:,} images)"
        lines.append(f"Test set ({sizes['test']:,} {data_label(config.data.binarize)} images): {figures}{detail}; nats per image.")
    return "\n\n".join(lines)


def _binarized(config: Config) -> str:
    return {"none": "", "dynamic": " (dynamically binarized)", "fixed": " (binarized once, fixed)"}[config.data.binarize]
