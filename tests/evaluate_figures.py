"""A fixed tiny model, classifier and data, and every figure the evaluate stage computes for them.

tests/test_evaluate_figures.py compares the figures of the current code with ``evaluate_figures.json``,
which this module wrote with the evaluate stage's code before it was made fast (commit 37df3a9):

    git worktree add /tmp/old37 37df3a9
    PYTHONPATH=/tmp/old37/src:tests TF_CPP_MIN_LOG_LEVEL=2 python tests/evaluate_figures.py

It uses only functions that both versions have (``report.test_metrics``, ``build_vae``, ``build_classifier``),
and sets every weight from a seeded NumPy generator, so the model does not depend on Keras' initializers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from data_helpers import bar_images
from tiny import tiny_network

from vaelab.config.load import with_overrides
from vaelab.config.schema import ClassifierSection, Config
from vaelab.data.processed import Splits

FIGURES_FILE = Path(__file__).with_name("evaluate_figures.json")
PRECISIONS = ("float32", "mixed_bfloat16")  # the model's dtype policy; the stage evaluates in the one it was trained in
CLASSES = ("top", "middle", "bottom")
# Ragged on purpose: 150 test images in batches of 64 leave a last batch of 22; the NLL's 24 images x 10 draws
# fill passes of 6 images; 130 prior samples end in a short batch too.
SETTINGS = {
    **tiny_network([8, 8], [8, 1]),
    "evaluate.batch_size": 64,
    "evaluate.nll_samples": 10,
    "evaluate.nll_images": 24,
    "evaluate.quality_samples": 130,
}
CLASSIFIER = ClassifierSection(filters=(4, 8), feature_units=16, dropout_rate=0.0)


def tiny_splits() -> Splits:
    """Bars on noise: 200 train, 150 test images; the same every run."""
    rng = np.random.default_rng(7)
    x_train, y_train = bar_images(200, rng)
    x_val, y_val = bar_images(10, rng)
    x_test, y_test = bar_images(150, rng)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, (28, 28, 1), CLASSES)


def seeded_weights(model, seed: int, scale: float = 1.5) -> None:
    """Every weight of ``model`` drawn from N(0, scale^2 / fan-in), in the order Keras lists them."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        weight.assign((rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype("float32"))


def figures(folder: Path, precision: str) -> dict[str, float]:
    """Every metric the evaluate stage writes, for the fixed model in ``precision``; ``folder`` holds the classifier."""
    from vaelab.evaluation.classifier import CLASSIFIER_FILE, build_classifier
    from vaelab.evaluation.report import test_metrics
    from vaelab.files import write_json
    from vaelab.model import build_vae

    folder.mkdir(parents=True, exist_ok=True)
    config = with_overrides(
        Config(), {**SETTINGS, "paths.classifier": str(folder / "classifier"), "paths.classifier_metrics": str(folder / "classifier.json")}
    )
    judge = build_classifier((28, 28, 1), len(CLASSES), CLASSIFIER)
    seeded_weights(judge, seed=2)
    (folder / "classifier").mkdir(exist_ok=True)
    judge.save(folder / "classifier" / CLASSIFIER_FILE)
    write_json(folder / "classifier.json", {"classifier_test_accuracy": 0.5})
    model = build_vae((28, 28, 1), config.train, seed=config.base.seed, policy=precision)
    seeded_weights(model, seed=1)
    return test_metrics(model, tiny_splits(), config)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        result = {precision: figures(Path(scratch) / precision, precision) for precision in PRECISIONS}
    FIGURES_FILE.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {FIGURES_FILE}\n")
