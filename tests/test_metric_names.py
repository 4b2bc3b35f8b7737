"""Likelihood metric names state their data and K; the headline pattern of the Makefile is the library's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.metric_names import HEADLINE_PATTERN, evaluate_neg_elbo_metric, evaluate_nll_metric, neg_elbo_metric, nll_metric

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("binarize", "nll", "elbo"),
    [
        ("none", "test_nll_k100_grayscale_nats", "test_neg_elbo_k1_grayscale_nats"),
        ("dynamic", "test_nll_k100_binarized_nats", "test_neg_elbo_k1_binarized_nats"),
        ("fixed", "test_nll_k100_binarized_nats", "test_neg_elbo_k1_binarized_nats"),
    ],
)
def test_names_follow_the_data_and_k(binarize: str, nll: str, elbo: str) -> None:
    config = with_overrides(Config(), {"data.binarize": binarize})
    assert (evaluate_nll_metric(config), evaluate_neg_elbo_metric(config)) == (nll, elbo)
    assert evaluate_nll_metric(with_overrides(config, {"evaluate.nll_samples": 5000})) == nll.replace("k100", "k5000")
    assert nll_metric("val", 7, binarize) == nll.replace("test_", "val_").replace("k100", "k7")
    assert neg_elbo_metric("val", binarize) == elbo.replace("test_", "val_")


def test_the_headline_pattern_takes_the_headline_metrics_and_nothing_else() -> None:
    headline = re.compile(f"^({HEADLINE_PATTERN})$")
    for name in (
        "test_nll_k100_grayscale_nats",
        "test_nll_k5000_binarized_nats",
        "test_neg_elbo_k1_binarized_nats",
        "sample_fid_classifier",
    ):
        assert headline.match(name), name
    for name in ("val_nll_k100_grayscale_nats", "test_nll_kx_binarized_nats", "test_loss", "test_nll_iwae_nats", "test_neg_elbo_nats"):
        assert not headline.match(name), name


def test_the_makefile_uses_the_same_pattern() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    (line,) = [line for line in makefile.splitlines() if line.startswith("HEADLINE := ")]
    assert line.removeprefix("HEADLINE := ") == HEADLINE_PATTERN
