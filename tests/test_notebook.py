"""notebooks/explore.ipynb, executed top to bottom by a real Jupyter kernel against a tiny trained, registered model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from vaelab.config.load import load_config
from vaelab.data.processed import load_splits
from vaelab.stages import run_evaluate, run_train

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


def _execute(folder: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is this interpreter's own (ipykernel's python3 spec) and starts in the tiny project, as
    # Jupyter would after `cd notebooks/..`; a cell that raises fails the test with its traceback.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def _printed(notebook: nbformat.NotebookNode) -> list[str]:
    streams = [out["text"] for cell in notebook.cells for out in cell.get("outputs", []) if out.get("name") == "stdout"]
    return [line for text in streams for line in text.splitlines()]


def test_the_notebook_explores_the_registry_best_model_from_top_to_bottom(tiny_project, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_project()
    monkeypatch.delenv("VAELAB_MODEL", raising=False)  # the default: the registry's best of params.yaml's experiment
    config = load_config("params.yaml")
    run_id = run_train(config)
    run_evaluate(config)  # registers the version and points `best` at it

    notebook = _execute(folder)

    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == []
    printed = _printed(notebook)
    assert "model     models:/vaelab-mnist@best" in printed
    assert "z_dim     2" in printed
    assert "images    (28, 28, 1) of mnist, binarized: none" in printed
    assert "test set  96 images, classes: top, middle, bottom" in printed
    assert any(line.startswith("run mnist-z2-r1000-") and f"({run_id}), FINISHED" in line for line in printed)
    assert f"http://127.0.0.1:5000/#/experiments/1/runs/{run_id}" in printed

    labels = load_splits(folder / "data/processed").y_test
    second = next(i for i, label in enumerate(labels) if label != labels[0])
    names = ["top", "middle", "bottom"]
    assert f"test image 0 ({names[labels[0]]}) -> test image {second} ({names[labels[second]]})" in printed

    # reconstructions, three temperatures of samples, the latent scatter, the latent grid (z_dim 2), the morphs
    pictures = [out for cell in notebook.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(pictures) == 5
    tables = [out for cell in notebook.cells for out in cell.get("outputs", []) if "text/html" in out.get("data", {})]
    assert any("test_nll_k4_grayscale_nats" in table["data"]["text/html"] for table in tables)
    assert any("precision used" in table["data"]["text/html"] for table in tables)
