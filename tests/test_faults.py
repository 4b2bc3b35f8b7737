"""Storage faults and damaged files: one line naming the path, exit code 2, and nothing overwritten.

A full disk and a read-only folder are real: small tmpfs mounts (root only; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tiny import write_params

from vaelab.config.load import load_config
from vaelab.data.processed import load_splits
from vaelab.errors import TrainingError
from vaelab.training import train

pytestmark = pytest.mark.slow

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


@pytest.fixture
def project(tiny_project) -> Path:
    return tiny_project(sizes=(64, 16, 16))


def test_disk_full_at_model_save_is_one_line_naming_the_path_and_keeps_the_old_model(project: Path, project_root: Path) -> None:
    # The model file is ~110 kB; a 32 kB filesystem holding the previous model cannot take it.
    with _tmpfs(project / "full", "size=32k") as full:
        (full / "vae.keras").write_bytes(b"the previous model")
        write_params(project, project_root, {"paths": {"model": str(full / "vae.keras")}})

        done = _stage("train")

        assert done.returncode == 2, done.stderr[-3000:]
        advice = "free space or choose another folder in params.yaml paths"
        assert _last_line(done) == f"vaelab: error: cannot write {full / 'vae.keras'}: No space left on device; {advice}"
        assert "Traceback" not in done.stderr
        assert (full / "vae.keras").read_bytes() == b"the previous model"
        assert sorted(p.name for p in full.iterdir()) == ["vae.keras"]  # no half-written temporary left
    assert not Path("models/mlflow_run.json").exists()  # the stage stopped before declaring success


def test_read_only_output_folder_is_one_line_naming_it(project: Path, project_root: Path) -> None:
    with _tmpfs(project / "readonly", "ro,size=1m") as readonly:
        write_params(project, project_root, {"paths": {"model": str(readonly / "vae.keras")}})

        done = _stage("train")

        assert done.returncode == 2, done.stderr[-3000:]
        assert _last_line(done) == f"vaelab: error: folder {readonly} is not writable"
        assert "Traceback" not in done.stderr and list(readonly.iterdir()) == []


def test_damaged_model_file_is_a_clear_error_and_left_as_it_was(project: Path, mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    run = client.create_run(client.create_experiment("faults"))
    Path("models").mkdir()
    Path("models/mlflow_run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    damaged = b"PK\x03\x04" + b"\x00" * 60  # a zip header and then nothing: a model file cut short
    Path("models/vae.keras").write_bytes(damaged)

    done = _stage("evaluate")

    assert done.returncode == 2, done.stderr[-3000:]
    assert _last_line(done).startswith("vaelab: error: models/vae.keras: cannot load the model (")
    assert _last_line(done).endswith("re-run `dvc repro train`") and "Traceback" not in done.stderr
    assert Path("models/vae.keras").read_bytes() == damaged
    assert not Path("reports/metrics.json").exists()


@pytest.mark.parametrize("damage", ["truncated to half", "zeroed"])
def test_damaged_checkpoint_is_a_clear_error_and_left_as_it_was(project: Path, damage: str) -> None:
    config = load_config("params.yaml")
    splits = load_splits(config.paths.processed)
    folder = project / "checkpoints/train"
    # Leaves the checkpoint after epoch 1 (the stage, not train(), clears it); the same settings resume from it.
    train(config, splits, checkpoint_dir=folder, verbose=0)
    model_file = folder / "model-epoch-0001.keras"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2] if damage == "truncated to half" else bytes(len(data)))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    with pytest.raises(TrainingError) as caught:
        train(config, splits, checkpoint_dir=folder, verbose=0)

    assert str(caught.value) == (
        f"{model_file}: the checkpoint is damaged (not a .keras zip file); delete {folder} to start the training afresh"
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _stage(name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(PIPELINE / f"{name}.py")], env=env, capture_output=True, text=True, timeout=300)


def _last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.rstrip("\n").splitlines()[-1]


@contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_an_epoch_checkpointed_but_not_logged_before_a_kill_is_logged_once_on_resume(mlflow_uri: str) -> None:
    from vaelab.tracking.epochs import log_missing_epochs

    client = MlflowClient(mlflow_uri)
    run_id = client.create_run(client.create_experiment("resume")).info.run_id
    client.log_metric(run_id, "loss", 5.0, step=1)  # epoch 1 logged; the kill came after epoch 2's checkpoint
    history: list[dict[str, Any]] = [{"epoch": 1, "loss": 5.0, "val_loss": None}, {"epoch": 2, "loss": 4.0, "val_loss": 4.5}]

    log_missing_epochs(run_id, history)
    log_missing_epochs(run_id, history)  # a second resume adds nothing

    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 5.0), (2, 4.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_loss")] == [(2, 4.5)]
    # The caught-up epoch carries the best epoch so far, counted over the whole checkpointed history.
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "best_val_loss")] == [(2, 4.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "best_epoch")] == [(2, 2.0)]


STORE_ADVICE = "point MLFLOW_TRACKING_URI at another store (unset, runs go to mlflow.db in the project root)"


def test_a_tracking_server_that_is_down_fails_the_stage_in_one_line_before_any_training(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://vaelab:s3cret@127.0.0.1:{port}")

    done = _stage("train")

    assert done.returncode == 2, done.stderr[-3000:]
    assert _last_line(done) == (
        f"vaelab: error: MLflow tracking store http://vaelab:***@127.0.0.1:{port} cannot be reached or written "
        f"([Errno 111] Connection refused); start the server (make server) or {STORE_ADVICE}"
    )
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    assert "Epoch 1/" not in done.stdout and not Path("checkpoints").exists()  # stopped before any work


def test_a_read_only_sqlite_store_fails_the_stage_in_one_line_and_keeps_its_runs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _tmpfs(project / "store", "size=4m") as folder:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        # An earlier run, written by another process: an open SQLite connection here would keep the remount busy.
        earlier = f"from mlflow.tracking import MlflowClient as C; c = C({uri!r}); c.create_run(c.create_experiment('vaelab-mnist'))"
        subprocess.run([sys.executable, "-c", earlier], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

        done = _stage("train")

        assert done.returncode == 2, done.stderr[-3000:]
        assert _last_line(done) == (
            f"vaelab: error: MLflow tracking store {uri} cannot be reached or written (Read-only file system); "
            f"make it writable or {STORE_ADVICE}"
        )
        assert "Traceback" not in done.stderr
        with contextlib.closing(sqlite3.connect(f"file:{folder / 'mlflow.db'}?mode=ro", uri=True)) as database:
            assert database.execute("SELECT status FROM runs").fetchall() == [("RUNNING",)]  # the earlier run, untouched
