"""What a user sees when a TensorFlow stage runs as `dvc repro` runs it: progress and results, no framework internals.

The stages run as subprocesses with an environment that lacks TF_CPP_MIN_LOG_LEVEL (conftest sets it for
this process only), like a shell where the user never exported it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab import logs

ABSL_LINE = re.compile(r"^[EWI]\d{4} ", re.MULTILINE)
LOAD_NOTICES = ("oneDNN custom operations", "absl::InitializeLog")


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project({"train": {"epochs": 3}})  # three epochs: three progress lines to count


def run_stage(stage: str, folder: Path, project_root: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", logs.VERBOSE_TF_ENV)}
    env.update(extra_env)  # MLFLOW_TRACKING_URI comes from the mlflow_uri fixture, through os.environ
    return subprocess.run(
        [sys.executable, str(project_root / "pipeline" / f"{stage}.py")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def framework_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ABSL_LINE.match(line) or any(n in line for n in LOAD_NOTICES)]


@pytest.mark.slow
def test_train_stage_prints_progress_and_no_framework_lines(project: Path, project_root: Path) -> None:
    result = run_stage("train", project, project_root)

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert framework_lines(output) == [], output
    assert "remapper" not in output  # Grappler's "remapper failed: INVALID_ARGUMENT" (see training._without_remapper)
    epochs = [line for line in result.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert result.stdout.count("val_loss: ") == 3
    assert (project / "models/vae.keras").stat().st_size > 0


# The evaluate stage loads TensorFlow before it finds that the train stage has not run: a cheap way to
# see what importing TensorFlow prints, and that a user mistake still ends in one line.
@pytest.mark.slow
def test_user_mistake_after_loading_tensorflow_is_one_line(project: Path, project_root: Path) -> None:
    result = run_stage("evaluate", project, project_root)

    assert result.returncode == 2
    assert result.stderr.splitlines() == ["vaelab: error: models/mlflow_run.json: not found; run the train stage first (dvc repro train)"]
    assert result.stdout == ""


@pytest.mark.slow
def test_verbose_tf_env_brings_the_framework_lines_back(project: Path, project_root: Path) -> None:
    result = run_stage("evaluate", project, project_root, **{logs.VERBOSE_TF_ENV: "1"})

    assert result.returncode == 2
    lines = framework_lines(result.stderr)
    # The load notice every CPU gets; oneDNN's own notice appears only where TensorFlow turns oneDNN on (not on
    # this AMD EPYC without AVX-512, for one), so it is not required here.
    assert any("All log messages before absl::InitializeLog() is called" in line for line in lines), result.stderr
    assert any(ABSL_LINE.match(line) and "cpu_feature_guard" in line for line in lines), result.stderr
    assert result.stderr.splitlines()[-1].startswith("vaelab: error: models/mlflow_run.json: not found")


def test_only_the_load_notices_are_cut() -> None:
    notices = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1796130680.757542    6666 port.cc:153] oneDNN custom operations are on. You may see slightly "
        b"different numerical results due to floating-point round-off errors from different computation orders.\n",
    ]
    others = [
        b"E0000 00:00:1796130693.668507    6666 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: ...\n",
        b"I0000 00:00:1796130680.790971    6666 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...\n",
        b"/x/keras/src/layers/layer.py:421: UserWarning: `build()` was called on layer 'vae' ...\n",
        b"  warnings.warn(\n",
        b"WARNING: something else written before absl::InitializeLog() is called\n",
        b"ImportError: libcudart.so.12: cannot open shared object file\n",
    ]
    assert [logs.is_load_notice(line) for line in notices] == [True, True]
    assert [logs.is_load_notice(line) for line in others] == [False] * len(others)


def test_quiet_tensorflow_keeps_an_exported_level_and_steps_aside_when_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    tf_logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(tf_logger, "level", tf_logger.level)  # restored after the test
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv(logs.VERBOSE_TF_ENV, "1")
    logs.quiet_tensorflow()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ

    monkeypatch.setenv(logs.VERBOSE_TF_ENV, "0")
    logs.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert tf_logger.level == logging.WARNING

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    logs.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
