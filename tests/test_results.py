"""The README's likelihood table shows what the committed result files of those runs hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaelab.config.load import load_config

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "results" / "likelihood"


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_the_readme_row_is_the_committed_figure(dataset: str) -> None:
    folder = RESULTS / dataset
    config = load_config(folder / "params.yaml")
    assert (config.data.dataset, config.data.binarize) == (dataset, "dynamic")
    (result_file,) = sorted(folder.glob("likelihood*.json"))
    result = json.loads(result_file.read_text())
    k = result["importance_samples"]
    nll = result[f"test_nll_k{k}_binarized_nats"]
    assert (result["images"], result["test_images"], result["binarize"]) == (10_000, 10_000, "dynamic")

    preset = "mnist-likelihood" if dataset == "mnist" else "fashion-mnist-likelihood"
    (row,) = [line for line in (PROJECT / "README.md").read_text().splitlines() if line.startswith(f"| **vaelab `{preset}`")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == ["dynamic", str(k), f"**{nll:.2f}**"]
    metrics = json.loads((folder / "metrics.json").read_text())
    if len(cells) > 4:  # the negative ELBO beside it
        assert cells[4] == f"{metrics['test_neg_elbo_k1_binarized_nats']:.2f}"
