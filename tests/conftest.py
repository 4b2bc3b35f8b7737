"""Shared fixtures. Tests shrink the real params.yaml rather than keeping their own copy of it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from tiny import BAR_SPLIT_SIZES, tiny_settings, write_bar_splits, write_params

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test, used through MLFLOW_TRACKING_URI like a user would."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def tiny_project(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, project_root: Path):
    """Makes tmp_path, the working folder, a tiny project: ``tiny_project(*changes, sizes=...)`` writes
    params.yaml (tiny.TINY and the changes over the real one) and bar images in data/processed, and returns
    the folder. Runs go to the test's own SQLite store."""
    monkeypatch.chdir(tmp_path)

    def make(*changes: dict[str, dict], sizes: tuple[int, int, int] = BAR_SPLIT_SIZES) -> Path:
        write_params(tmp_path, project_root, *changes)
        binarize = tiny_settings(*changes).get("data", {}).get("binarize", "none")
        write_bar_splits(tmp_path / "data/processed", sizes, binarize)
        return tmp_path

    return make


class ScratchDatabases:
    """Databases on the local PostgreSQL server that one test creates and that are dropped after it."""

    def __init__(self, admin) -> None:
        self.admin = admin  # autocommit connection to the `postgres` database
        self.names: list[str] = []

    def new(self, prefix: str, *, create: bool = True) -> str:
        """A fresh database name; ``create=False`` leaves creating it to the code under test."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        if create:
            with self.admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_all(self) -> None:
        with self.admin.cursor() as cursor:
            for name in self.names:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_databases():
    """PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres). Missing server: skipped locally, a failure in CI."""
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as err:
        reason = f"no PostgreSQL server on 127.0.0.1:5432 ({str(err).strip()})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    admin.autocommit = True
    databases = ScratchDatabases(admin)
    try:
        yield databases
    finally:
        databases.drop_all()
        admin.close()


# --- sweep and training fixtures ------------------------------------------------------------------------------
# They import their helpers (and through them vaelab's config, Optuna, MLflow and Keras) when first used, so
# that running the other tests does not pay for those imports.


@pytest.fixture(scope="session")
def sweep_processed(tmp_path_factory) -> Path:
    """256 training (the sweep uses the first 192), 64 validation and 16 test images in the processed layout."""
    from sweep_helpers import IMAGE_SHAPE, square_images

    from vaelab.data.processed import write_splits

    folder = tmp_path_factory.mktemp("processed")
    rng = np.random.default_rng(0)
    arrays = {"x_train": square_images(256, rng), "x_val": square_images(64, rng), "x_test": square_images(16, rng)}
    for split in ("train", "val", "test"):
        arrays[f"y_{split}"] = np.zeros(len(arrays[f"x_{split}"]), dtype=np.uint8)
    write_splits(folder, arrays, {"dataset": "mnist", "image_shape": list(IMAGE_SHAPE), "class_names": ["square"]})
    return folder


@pytest.fixture
def sweep_config(project_root: Path, sweep_processed: Path):
    """``sweep_config(sweep__storage=url, ...)``: the real params.yaml with TINY_SWEEP, the sweep's images and
    the given overrides (``__`` for ``.``) laid over it."""
    from sweep_helpers import TINY_SWEEP

    from vaelab.config.load import load_config
    from vaelab.config.schema import Config

    def make(**overrides) -> Config:
        dotted = {key.replace("__", "."): value for key, value in overrides.items()}
        return load_config(project_root / "params.yaml", {**TINY_SWEEP, "paths.processed": str(sweep_processed), **dotted})

    return make


@pytest.fixture
def sweep_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> Path:
    """Run in tmp_path (sweeps/ lands there) with a fresh MLflow store and no storage from the environment."""
    from vaelab.sweep.storage import STORAGE_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


@pytest.fixture
def sweep_database(scratch_databases: ScratchDatabases) -> str:
    """A fresh database for an Optuna study; its SQLAlchemy URL with a password (sweep_helpers.PASSWORD) in it."""
    from sweep_helpers import PASSWORD

    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{scratch_databases.new('vaelab_sweep')}"


@pytest.fixture
def tiny_train_config(project_root: Path):
    """``tiny_train_config(**overrides)``: the real params.yaml with TINY_TRAIN and the dotted overrides over it."""
    from training_helpers import TINY_TRAIN

    from vaelab.config.load import load_config

    def make(**overrides):
        return load_config(project_root / "params.yaml", {**TINY_TRAIN, **overrides})

    return make


@pytest.fixture(scope="module")
def square_splits():
    """256 training and 64 validation images: random bright squares on black, like crude digits."""
    from training_helpers import IMAGE_SHAPE

    from vaelab.data.processed import Splits

    rng = np.random.default_rng(0)

    def images(n):
        x = np.zeros((n, *IMAGE_SHAPE), dtype="float32")
        for image, (top, left, size) in zip(x, rng.integers((0, 0, 6), (14, 14, 14), size=(n, 3)), strict=True):
            image[top : top + size, left : left + size] = rng.uniform(0.5, 1.0)
        return x

    labels = np.zeros(64, dtype="int64")
    return Splits(
        x_train=images(256),
        y_train=np.zeros(256, dtype="int64"),
        x_val=images(64),
        y_val=labels,
        x_test=images(64),
        y_test=labels,
        image_shape=IMAGE_SHAPE,
        class_names=("square",),
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict[str, str]:
    """A tiny VAE logged as the train stage logs it, one logged the old reconstruct-only way, and its Keras file,
    in a store of their own (:func:`generative_helpers.log_tiny_models`): ``store``, ``model_uri``, ``run_id``,
    ``old_run_id``, ``folder``, ``keras_file``, and a VampPrior model's ``vamp_model_uri`` and ``vamp_keras_file``."""
    from generative_helpers import log_tiny_models

    return log_tiny_models(tmp_path_factory.mktemp("generative"), PROJECT_ROOT)
