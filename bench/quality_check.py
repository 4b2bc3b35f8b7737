"""The quality check of a faster precision: the same few epochs in float32 and in it, test negative ELBO side by side.

Both trainings start from the same seed on the benchmark workspace's processed data (the project's real
MNIST in full mode) through ``vaelab.training.train``, and are scored by the evaluate stage's own
estimator (``vaelab.evaluation.metrics.mean_negative_elbo``: Bernoulli negative ELBO in nats, one z per
image) on the whole test split, always in float32 arithmetic for the likelihood. A gap under 1% says the
precision trains as well as float32; round-off alone makes two float32 runs on different CPUs differ by
about 0.1%.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("bench")

REFERENCE_PRECISION = "float32"


def compare(work: Path, precision: str, epochs: int) -> dict:
    """Train ``epochs`` epochs in float32 and in ``precision`` on ``work``'s processed data; both scores and the gap.

    ``gap`` is (precision - float32) / float32 of the test negative ELBO: + means the precision trained worse.
    """
    from vaelab.config.load import load_config, with_overrides
    from vaelab.data.processed import load_splits

    config = load_config(work / "params.yaml", {"train.epochs": epochs})
    splits = load_splits(work / config.paths.processed)
    scores, seconds = {}, {}
    for policy in (REFERENCE_PRECISION, precision):
        started = time.perf_counter()
        scores[policy] = _test_negative_elbo(with_overrides(config, {"train.precision": policy}), splits)
        seconds[policy] = time.perf_counter() - started
        log.info("quality check: %d epochs in %s, test negative ELBO %.2f nats (%.0f s)", epochs, policy, scores[policy], seconds[policy])
    reference = scores[REFERENCE_PRECISION]
    return {
        "epochs": epochs,
        "train_images": len(splits.x_train),
        "test_images": len(splits.x_test),
        "precision": precision,
        "test_neg_elbo_nats": scores,
        "seconds": seconds,
        "gap": (scores[precision] - reference) / abs(reference),
        "status": "measured",
    }


def _test_negative_elbo(config, splits) -> float:
    from vaelab.evaluation.metrics import mean_negative_elbo
    from vaelab.training import train

    model = train(config, splits, verbose=0).model
    return mean_negative_elbo(model, splits.x_test, config.evaluate.batch_size, config.base.seed)
