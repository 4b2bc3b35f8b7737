"""The objectives a trial can be scored by besides the validation NLL (``sweep.objectives``), at its last epoch.

- ``params``: the VAE's trainable parameter count, its size.
- ``sample_fid``: the classifier-feature FID of prior samples, the evaluate stage's ``sample_fid_classifier``
  (same samples, seed and classifier, :func:`vaelab.evaluation.quality.sample_quality`) measured against the
  validation images instead of the test images, which a sweep never looks at. It needs the classifier stage's
  model, which :func:`require_classifier` checks before a study starts.

The validation NLL itself is scored after every epoch by the objective's reporter (:mod:`vaelab.sweep.objective`).

Part of vaelab.sweep; Keras is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vaelab.config.schema import Config
from vaelab.errors import DataError

if TYPE_CHECKING:
    import keras
    import numpy as np

    from vaelab.data.processed import Splits
    from vaelab.data.shards import ShardedImages
    from vaelab.model import VAE


def trainable_parameters(model: VAE) -> int:
    """Weights the optimiser trains: encoder and decoder, without batch norm's moving statistics."""
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)


def require_classifier(config: Config) -> None:
    """Raise a one-line DataError when ``sample_fid`` is an objective and the classifier stage left no model."""
    from vaelab.evaluation.classifier import CLASSIFIER_FILE, NO_LABELS_FILE

    path = config.paths.classifier / CLASSIFIER_FILE
    if "sample_fid" not in config.sweep.objectives or path.exists():
        return
    if (config.paths.classifier / NO_LABELS_FILE).exists():  # the classifier stage found no labels to learn
        raise DataError("sweep.objectives has sample_fid, but the dataset has no class labels to train its classifier on")
    raise DataError(
        f"sweep.objectives has sample_fid, which scores samples with the classifier stage's model, but {path} "
        "does not exist; run `dvc repro classifier` first"
    )


def load_judge(config: Config, splits: Splits) -> keras.Model:
    """The classifier stage's model, checked against ``splits``; a one-line DataError if it is missing or does not fit."""
    from vaelab.evaluation.report import load_classifier

    require_classifier(config)
    if len(splits.class_names) < 2:
        raise DataError("sweep.objectives has sample_fid, but the dataset has no class labels to train its classifier on")
    judge = load_classifier(config, splits)  # None after a warning that says how it does not fit
    if judge is None:
        raise DataError(
            f"sweep.objectives has sample_fid, but the classifier in {config.paths.classifier} does not fit this data; "
            "run `dvc repro classifier`"
        )
    return judge


def sample_fid(judge: keras.Model, model: VAE, x_val: ShardedImages | np.ndarray, config: Config) -> float:
    """``evaluate.quality_samples`` prior samples of ``model`` against ``x_val``, like the evaluate stage's FID."""
    from vaelab.evaluation import real_features
    from vaelab.evaluation.quality import sample_quality

    evaluate = config.evaluate
    binary = config.data.binarize != "none"  # a model of bits is judged on its drawn bits, as in the evaluate stage
    real = real_features.load(config.paths.classifier, "val", x_val)  # None for a capped split: computed here
    scores = sample_quality(
        judge, model, x_val, evaluate.quality_samples, config.base.seed, evaluate.batch_size, binary=binary, real_statistics=real
    )
    return scores["sample_fid_classifier"]
