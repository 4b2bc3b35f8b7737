"""A throwaway git+DVC copy of this repository for end-to-end tests, shrunk through its params.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_ok(args: list[str], cwd: Path, env: dict, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a command that must succeed; on failure the assertion shows the end of its output."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def make_repo_copy(root: Path, shrink: dict[str, dict]) -> dict:
    """Copy the tracked and new files into ``root``, apply ``shrink`` to params.yaml, commit; return the env to use.

    The env puts this interpreter's venv first on PATH (DVC runs `python ...` through the shell) and points
    MLflow at a store inside the copy.
    """
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        if (PROJECT_ROOT / rel).is_file() and not rel.startswith(".dvc/tmp"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, root / rel)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in shrink.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env.pop("DVC_EXP_NAME", None)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        run_ok(command, root, env)
    return env


def repo_fixture(shrink: dict[str, dict]):
    """A module-scoped pytest fixture ``repo``: (root, env) of one :func:`make_repo_copy` shared by the module's tests."""

    @pytest.fixture(scope="module")
    def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
        root = tmp_path_factory.mktemp("repo")
        return root, make_repo_copy(root, shrink)

    return repo
