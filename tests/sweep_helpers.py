"""What the sweep tests share: the tiny sweep settings, their square images, and readers of the studies and runs
a sweep leaves. The fixtures built on them (``sweep_processed``, ``sweep_config``, ``sweep_workdir``,
``sweep_database``) are in conftest.py."""

from __future__ import annotations

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from mlflow_helpers import experiment_runs
from tiny import tiny_network

from vaelab.sweep.storage import DEFAULT_STORAGE, open_storage

IMAGE_SHAPE = (28, 28, 1)
EXPERIMENT = "sweep-tests"
PASSWORD = "pg-s3cret-word"  # in sweep_database's URL; trust auth ignores it, and it must never reach MLflow or the logs
# A network small enough that a two-epoch trial on 192 images takes about two seconds.
TINY_SWEEP = {
    "base.experiment": EXPERIMENT,
    **tiny_network([4, 8], [8, 1]),
    "train.batch_size": 64,
    "sweep.trials_per_process": None,  # in the test process, unless a test asks for fresh worker processes
    # The objective: K = 20 draws on a seeded 48 of the 64 validation images, 24 decoded per pass.
    "evaluate.nll_samples": 20,
    "evaluate.nll_images": 48,
    "evaluate.batch_size": 24,
    "sweep.study_name": "tiny",
    "sweep.epochs": 2,
    "sweep.max_train": 192,
    "sweep.timeout_minutes": 5,
    "sweep.sampler": "random",
    "sweep.pruner": "none",
    "sweep.space": {
        "z_dim": {"low": 2, "high": 8, "log": True},
        "r_loss_factor": {"low": 100, "high": 3000, "log": True},
        "learning_rate": {"low": 0.001, "high": 0.01, "log": True},
    },
}


def square_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """White squares of random size and place on black: something a VAE learns within two epochs."""
    x = np.zeros((n, *IMAGE_SHAPE), dtype="float32")
    for image, (top, left, size) in zip(x, rng.integers((0, 0, 6), (14, 14, 14), size=(n, 3)), strict=True):
        image[top : top + size, left : left + size] = 1.0
    return x


def mlflow_runs(uri: str) -> tuple:
    """(parent runs, child runs) of the test experiment; a child is a run with a parent tag."""
    client = MlflowClient(uri)
    runs = experiment_runs(client, EXPERIMENT)
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    return parents, children


def study_in(storage: str = DEFAULT_STORAGE, name: str = "tiny") -> optuna.Study:
    """The study ``name`` (TINY_SWEEP's by default) in ``storage``: a URL, or the default journal file."""
    return optuna.load_study(study_name=name, storage=open_storage(storage))
