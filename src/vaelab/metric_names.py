"""Names of the likelihood metrics, which say what they measure: the split, the estimator's K and the data.

A Bernoulli likelihood is the probability of binary data; on grey levels the same formula is only a
cross-entropy, and its nats cannot be set beside a paper's. So every likelihood figure is named after the
data it was computed on (``binarized`` or ``grayscale``) and its number of importance samples K:

- ``<split>_nll_k<K>_<data>_nats``: the importance-sampled estimate of -log p(x) (Burda et al.'s bound);
- ``<split>_neg_elbo_k1_<data>_nats``: the negative ELBO, one z per image with the KL in closed form, whose
  expectation equals the K = 1 bound.
"""

from __future__ import annotations

# The headline metrics as a regular expression (dvc exp show --keep, the Makefile, the MLflow view).
HEADLINE_PATTERN = r"test_neg_elbo_k1_(binarized|grayscale)_nats|test_nll_k\d+_(binarized|grayscale)_nats|sample_fid_classifier"


def data_label(binarize: str) -> str:
    """``binarized`` for data.binarize dynamic or fixed (the evaluation data are stored bits), else ``grayscale``."""
    return "grayscale" if binarize == "none" else "binarized"


def nll_metric(split: str, k: int, binarize: str) -> str:
    return f"{split}_nll_k{k}_{data_label(binarize)}_nats"


def neg_elbo_metric(split: str, binarize: str) -> str:
    return f"{split}_neg_elbo_k1_{data_label(binarize)}_nats"


def evaluate_nll_metric(config) -> str:
    """The evaluate stage's NLL for ``config`` (K = evaluate.nll_samples)."""
    return nll_metric("test", config.evaluate.nll_samples, config.data.binarize)


def evaluate_neg_elbo_metric(config) -> str:
    return neg_elbo_metric("test", config.data.binarize)
