"""Shared fixtures. Tests shrink the real params.yaml rather than keeping their own copy of it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

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
