"""The quality check of a faster precision: the same few epochs in float32 and in it, test negative ELBO side by side.

Both trainings start from the same seed on the benchmark workspace's processed data (the project's real
MNIST in full mode) through ``vaelab.training.train``, and are scored by the evaluate stage's own
estimator (``vaelab.evaluation.metrics.mean_negative_elbo``: Bernoulli negative ELBO in nats, one z per
image) on the whole test split, always in float32 arithmetic for the likelihood. A gap under 1% says the
precision trains as well as float32; round-off alone makes two float32 runs on different CPUs differ by
about 0.1%. The pair is trained from several seeds and the gap is that of the mean scores: from one seed to
the next the gap itself moved by half a point (mixed bfloat16 on an AMD EPYC, 2026-12-06: +1.13% from seed
42, +0.66% from seed 43), too much for one pair to tell 0.95% from 1.05%.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

log = logging.getLogger("bench")

REFERENCE_PRECISION = "float32"


def compare(work: Path, precision: str, epochs: int, seeds: int) -> dict:
    """Train ``epochs`` epochs in float32 and in ``precision`` from ``seeds`` seeds on ``work``'s processed data.

    The seeds are params.yaml's ``base.seed`` and the ones after it (``seeds``; each also draws the validation
    split). ``test_neg_elbo_nats`` holds each precision's mean over them, ``by_seed`` its trainings' scores in
    seed order, and ``gap`` is (precision - float32) / float32 of the means: + means the precision trained worse.
    """
    from vaelab.config.load import load_config, with_overrides
    from vaelab.data.processed import load_splits

    config = load_config(work / "params.yaml", {"train.epochs": epochs})
    splits = load_splits(work / config.paths.processed)
    seed_list = list(range(config.base.seed, config.base.seed + seeds))
    by_seed: dict[str, list[float]] = {REFERENCE_PRECISION: [], precision: []}
    seconds = dict.fromkeys(by_seed, 0.0)
    for seed in seed_list:
        for policy, scores in by_seed.items():
            started = time.perf_counter()
            scores.append(_test_negative_elbo(with_overrides(config, {"train.precision": policy, "base.seed": seed}), splits))
            seconds[policy] += time.perf_counter() - started
            log.info("quality check: %d epochs in %s from seed %d, test negative ELBO %.2f nats", epochs, policy, seed, scores[-1])
    means = {policy: statistics.fmean(scores) for policy, scores in by_seed.items()}
    reference = means[REFERENCE_PRECISION]
    return {
        "epochs": epochs,
        "train_images": len(splits.x_train),
        "test_images": len(splits.x_test),
        "precision": precision,
        "seeds": seed_list,
        "test_neg_elbo_nats": means,
        "by_seed": by_seed,
        "seconds": seconds,
        "gap": (means[precision] - reference) / abs(reference),
        "status": "measured",
    }


def _test_negative_elbo(config, splits) -> float:
    from vaelab.evaluation.metrics import mean_negative_elbo
    from vaelab.training import train

    model = train(config, splits, verbose=0).model
    return mean_negative_elbo(model, splits.x_test, config.evaluate.batch_size, config.base.seed)
