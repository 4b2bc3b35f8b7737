"""A tiny VAE logged the way the train stage logs it, beside one logged the old reconstruct-only way and one with a
VampPrior, in a store of its own: what the generative-model, `vaelab generate` and serving tests load (the ``logged``
fixture in conftest)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_network

TINY_GENERATIVE = {**tiny_network([4, 4], [4, 1]), "train.z_dim": 2, "base.experiment": "generative"}


def log_tiny_models(folder: Path, project_root: Path) -> dict[str, str]:
    """Log both models into ``folder/mlflow.db`` and save the Keras file; return where each one is."""
    import mlflow

    from vaelab.config.load import load_config
    from vaelab.model import build_vae
    from vaelab.tracking import runs
    from vaelab.tracking.export import log_generative_model, model_settings

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        config = load_config(project_root / "params.yaml", TINY_GENERATIVE)
        model = build_vae((28, 28, 1), config.train, seed=0)
        with runs.start_run(config) as run:
            model_uri = log_generative_model(model, model_settings(model, "mnist", "none"))
        with runs.start_run(config) as old_run, contextlib.redirect_stdout(io.StringIO()):
            # What vaelab logged before the generative format (commit 9437d93's export.py).
            examples = np.zeros((2, 28, 28, 1), dtype="float32")
            signature = mlflow.models.infer_signature(examples, np.asarray(model(examples, training=False)))
            mlflow.keras.log_model(model, name="model", save_exported_model=True, signature=signature, pip_requirements=["mlflow"])
        vamp = build_vae((28, 28, 1), config.train.model_copy(update={"prior": "vamp", "vamp_components": 3}), seed=0)
        with runs.start_run(config):
            vamp_model_uri = log_generative_model(vamp, model_settings(vamp, "mnist", "none"))
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    model.save(folder / "vae.keras")  # what the train stage leaves in paths.model
    vamp.save(folder / "vamp.keras")
    return {
        "store": uri,
        "model_uri": model_uri,
        "run_id": run.info.run_id,
        "old_run_id": old_run.info.run_id,
        "folder": str(folder),
        "keras_file": str(folder / "vae.keras"),
        "vamp_model_uri": vamp_model_uri,
        "vamp_keras_file": str(folder / "vamp.keras"),
    }
