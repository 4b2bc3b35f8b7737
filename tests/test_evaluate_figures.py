"""The evaluate stage's figures equal those of its earlier, slower implementation on a fixed tiny model.

The expected figures in evaluate_figures.json were computed by the code of commit 37df3a9 (how: see
tests/evaluate_figures.py). The same weights, data, seeds and random draws go in, so any difference is
round-off from running the layers as one compiled graph instead of op by op:
- float32: the same kernels in the same order; measured identical to 2e-9 (the NLL's float64 log-sum-exp).
  Tolerance 1e-6 relative.
- mixed_bfloat16: the graph rounds activations to bfloat16 (8 significant bits) at other points than eager
  execution; measured up to 1.1e-3 relative (the KL term). Tolerance one bfloat16 rounding step, 2^-8 = 0.4%,
  itself below the 0.2-0.8% by which the same weights' figures differ between float32 and bfloat16 here.
The latent accuracies may flip one borderline test image out of 150 when mu moves by round-off.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluate_figures import FIGURES_FILE, PRECISIONS, figures, tiny_splits

RELATIVE = {"float32": 1e-6, "mixed_bfloat16": 2**-8}
ONE_TEST_IMAGE = 1 / len(tiny_splits().y_test)
ACCURACIES = ("latent_knn_accuracy", "latent_logreg_accuracy")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_figures_equal_the_previous_implementations(tmp_path: Path, precision: str) -> None:
    expected = json.loads(FIGURES_FILE.read_text())[precision]

    actual = figures(tmp_path, precision)

    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        if name in ACCURACIES:
            assert actual[name] == pytest.approx(value, abs=ONE_TEST_IMAGE + 1e-12), name
        else:
            assert actual[name] == pytest.approx(value, rel=RELATIVE[precision], abs=1e-9), name
