"""vaelab.tracking against a real SQLite MLflow store (one per module: creating one takes seconds)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.errors import DataError, VaelabError
from vaelab.tracking import runs
from vaelab.tracking.epochs import BestEpoch, MlflowEpochLogger, best_epoch_of
from vaelab.tracking.experiments import artifact_location, open_experiment
from vaelab.tracking.redact import redact_url
from vaelab.tracking.run_info import read_run_info, write_run_info
from vaelab.tracking.store import tracking_uri

SECRET = "s3cr3t-pw"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("DVC_EXP_NAME", raising=False)
        yield uri
        # MLflow takes None (forget the URI, unset the variable) though its annotation leaves None out.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def client(store) -> MlflowClient:
    return MlflowClient(store)


@pytest.fixture
def config() -> Config:
    return with_overrides(Config(), {"base.experiment": "tracking-tests", "sweep.storage": f"postgresql://optuna:{SECRET}@db:5432/optuna"})


def _fit_three_epochs(run_id: str | None = None, initial_epoch: int = 0, epochs: int = 3) -> None:
    """A real (tiny) Keras fit, so the callback sees the logs Keras actually produces."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    x = np.random.default_rng(0).random((16, 3), dtype=np.float32)
    model.fit(
        x,
        x[:, :1],
        validation_data=(x, x[:, :1]),
        initial_epoch=initial_epoch,
        epochs=epochs,
        verbose=0,
        callbacks=[MlflowEpochLogger(run_id)],
    )


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("https://h:5000/api?x=a:b@c") == "https://h:5000/api?x=a:b@c"
    assert redact_url("http://u:p@ss@host:5000/x") == "http://u:***@host:5000/x"
    assert redact_url("a=mysql://root:pw@127.0.0.1/m b=redis://:pw2@r") == "a=mysql://root:***@127.0.0.1/m b=redis://:***@r"


def test_run_name_is_readable():
    assert runs.run_name(Config(), "a1b2c3") == "mnist-z2-r1000-a1b2c3"
    assert runs.run_name(with_overrides(Config(), {"train.z_dim": 16, "train.r_loss_factor": 0.5}), "x") == "mnist-z16-r0.5-x"


def test_default_store_is_mlflow_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)

    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_location(tracking_uri(), "vae mnist/2") == (tmp_path / "mlartifacts" / "vae_mnist_2").as_uri()
    assert artifact_location("http://127.0.0.1:5000", "vaelab-mnist") is None


def test_default_store_is_the_dvc_repository_s_also_from_a_temporary_experiment_copy(tmp_path, monkeypatch):
    # DVC runs queued and --temp experiments in .dvc/tmp/exps/<copy>, deleted afterwards; DVC_ROOT names the repository.
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))

    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_location(tracking_uri(), "vaelab-mnist") == (tmp_path / "mlartifacts" / "vaelab-mnist").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert tracking_uri() == "http://127.0.0.1:5001"  # an explicit store still wins


@pytest.mark.slow  # creates a second SQLite store
def test_without_a_tracking_uri_runs_go_to_mlflow_db_and_mlartifacts_here(tmp_path, monkeypatch, config):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")

    with runs.start_run(config) as run:
        runs.log_artifact("notes.txt")

    assert "MLFLOW_TRACKING_URI" not in os.environ  # not leaked to later runs from other folders
    assert (tmp_path / "mlflow.db").is_file()
    stored = list((tmp_path / "mlartifacts").glob(f"tracking-tests/{run.info.run_id}/artifacts/notes.txt"))
    assert len(stored) == 1
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run.info.run_id).info.status == "FINISHED"


def test_a_new_run_has_params_tags_epoch_metrics_and_finishes(store, client, config, project_root):
    with runs.start_run(config) as run:
        _fit_three_epochs()
    run_id = run.info.run_id

    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.info.artifact_uri.startswith("file://")
    assert finished.info.artifact_uri.endswith(f"/mlartifacts/tracking-tests/{run_id}/artifacts")
    params = finished.data.params
    assert params["train.z_dim"] == "2"
    assert params["train.encoder_filters"] == "32,64,64,64"
    assert params["data.max_train"] == "null"
    assert params["train.use_batch_norm"] == "false"
    assert params["sweep.storage"] == "postgresql://optuna:***@db:5432/optuna"
    assert len(params) == len(config.flat())
    tags = finished.data.tags
    assert tags["mlflow.runName"] == f"mnist-z2-r1000-{run_id[:6]}"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=project_root).stdout.strip()
    assert tags[runs.GIT_COMMIT_TAG] == head and "git.commit" not in tags
    assert tags["git.dirty"] in ("true", "false")
    everything = json.dumps([params, tags])
    assert SECRET not in everything

    for key in ("loss", "val_loss", "learning_rate"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == [1, 2, 3], key
    assert [m.value for m in client.get_metric_history(run_id, "learning_rate")] == pytest.approx([0.01] * 3)
    assert mlflow.active_run() is None


def test_each_epoch_logs_the_best_epoch_so_far(store, client, config):
    with runs.start_run(config) as run:
        _fit_three_epochs()
    run_id = run.info.run_id

    val_losses = [m.value for m in client.get_metric_history(run_id, "val_loss")]
    best = [(m.step, m.value) for m in client.get_metric_history(run_id, "best_val_loss")]
    best_epochs = [(m.step, m.value) for m in client.get_metric_history(run_id, "best_epoch")]
    assert [step for step, _ in best] == [1, 2, 3]
    # Hand-computed running minimum of what Keras reported, and where it was reached.
    running: list[float] = []
    where: list[int] = []
    for epoch, value in enumerate(val_losses, start=1):
        if not running or value < running[-1]:
            running.append(value)
            where.append(epoch)
        else:
            running.append(running[-1])
            where.append(where[-1])
    assert [value for _, value in best] == pytest.approx(running)
    assert [value for _, value in best_epochs] == [float(epoch) for epoch in where]
    latest = client.get_run(run_id).data.metrics
    assert latest["best_val_loss"] == pytest.approx(min(val_losses))
    assert latest["best_epoch"] == float(val_losses.index(min(val_losses)) + 1)


def test_a_resumed_run_keeps_a_best_epoch_it_logged_before_the_kill(store, client, config):
    with runs.start_run(config) as run:
        run_id = run.info.run_id
        client.log_metric(run_id, "val_loss", -1e9, step=1)  # lower than any mean squared error the fit can reach
        _fit_three_epochs(run_id, initial_epoch=1, epochs=3)

    best = [(m.step, m.value) for m in client.get_metric_history(run_id, "best_val_loss")]
    assert best == [(2, -1e9), (3, -1e9)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "best_epoch")] == [(2, 1.0), (3, 1.0)]


def test_best_epoch_is_the_lowest_loss_earliest_on_a_tie_and_never_nan():
    assert best_epoch_of([]) is None
    assert best_epoch_of([(1, float("nan"))]) is None
    assert best_epoch_of([(3, 2.0), (1, 5.0), (2, 2.0), (4, float("nan"))]) == BestEpoch(2, 2.0)
    assert best_epoch_of([(5, 3.0)], BestEpoch(2, 2.0)) == BestEpoch(2, 2.0)
    assert best_epoch_of([(5, 1.0)], BestEpoch(2, 2.0)) == BestEpoch(5, 1.0)
    assert BestEpoch(5, 1.0).metrics() == {"best_val_loss": 1.0, "best_epoch": 5.0}


def test_dvc_experiment_name_goes_into_tags_and_run_name(store, client, config, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "fuzzy-tent")
    with runs.start_run(config, tags={"stage": "train"}) as run:
        pass

    tags = client.get_run(run.info.run_id).data.tags
    assert tags["dvc.exp_name"] == "fuzzy-tent"
    assert tags["mlflow.runName"] == "mnist-z2-r1000-fuzzy-tent"
    assert tags["stage"] == "train"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_marks_the_run_failed_and_propagates(store, client, config, error):
    with pytest.raises(type(error)), runs.start_run(config) as run:
        raise error

    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_resuming_by_run_id_continues_the_same_run(store, client, config):
    with pytest.raises(KeyboardInterrupt), runs.start_run(config) as run:
        _fit_three_epochs(epochs=2)
        raise KeyboardInterrupt
    run_id = run.info.run_id

    # A changed config must not be re-logged: MLflow would refuse a different value for a param.
    changed = with_overrides(config, {"train.z_dim": 8})
    with runs.start_run(changed, run_id=run_id, tags={"resumed": "yes"}) as resumed:
        _fit_three_epochs(initial_epoch=2, epochs=3)

    assert resumed.info.run_id == run_id
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["train.z_dim"] == "2"
    assert finished.data.tags["resumed"] == "yes"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3]


def test_resuming_an_unknown_run_names_the_store(store, config):
    with (
        pytest.raises(VaelabError, match=r"MLflow run 0123456789abcdef not found in sqlite:///.*MLFLOW_TRACKING_URI"),
        runs.start_run(config, run_id="0123456789abcdef"),
    ):
        pass


def test_nested_runs_hang_under_their_parent(store, client, config):
    with runs.start_run(config, name="sweep") as parent:
        with runs.start_run(with_overrides(config, {"train.z_dim": 4}), nested=True, name="trial-0") as child:
            pass
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == parent.info.run_id

    tags = client.get_run(child.info.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["mlflow.runName"] == "trial-0"
    assert client.get_run(child.info.run_id).data.params["train.z_dim"] == "4"


def test_metrics_artifacts_and_dataset_manifest(store, client, config, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"files": {"train-images-idx3-ubyte.gz": "abc"}}\n')
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "a.png").write_bytes(b"png")
    (plots / "b.png").write_bytes(b"png")
    (plots / "sub").mkdir()
    (plots / "sub" / "c.txt").write_text("c")

    with runs.start_run(config) as run:
        runs.log_dataset_manifest(manifest)
        runs.log_metrics({"test_loss": np.float32(12.5), "latent_knn_accuracy": 0.75})
        for name in ("a.png", "b.png"):
            runs.log_artifact(plots / name, "plots")
        runs.log_artifact(plots / "sub" / "c.txt", "plots/sub")
        runs.log_artifact(manifest, "extra")

    run_id = run.info.run_id
    finished = client.get_run(run_id)
    assert finished.data.tags["data.manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert finished.data.metrics == {"test_loss": 12.5, "latent_knn_accuracy": 0.75}
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/a.png", "plots/b.png", "plots/sub"]
    assert [a.path for a in client.list_artifacts(run_id, "plots/sub")] == ["plots/sub/c.txt"]
    assert [a.path for a in client.list_artifacts(run_id, "data")] == ["data/manifest.json"]
    assert [a.path for a in client.list_artifacts(run_id, "extra")] == ["extra/manifest.json"]


def test_text_artifacts_are_uploaded_with_passwords_redacted(store, client, config, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"sweep:\n  storage: postgresql://optuna:{SECRET}@db/optuna\n")

    with runs.start_run(config) as run:
        runs.log_artifact(params)

    local = client.download_artifacts(run.info.run_id, "params.yaml", str(tmp_path / "download"))
    assert Path(local).read_text() == "sweep:\n  storage: postgresql://optuna:***@db/optuna\n"
    assert SECRET in params.read_text()  # the local file itself is left alone


def test_run_info_round_trip(store, client, config, tmp_path):
    with runs.start_run(config) as run:
        pass
    path = tmp_path / "models" / "mlflow_run.json"

    write_run_info(path, run.info.run_id)

    assert json.loads(path.read_text()) == {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": store,
    }
    assert read_run_info(path) == run.info.run_id


def test_read_run_info_explains_a_missing_or_broken_file(tmp_path):
    with pytest.raises(DataError, match=r"mlflow_run.json: not found; run the train stage first"):
        read_run_info(tmp_path / "mlflow_run.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match=r"broken.json: not valid JSON \(JSONDecodeError: .*\); run the train stage again"):
        read_run_info(broken)
    without = tmp_path / "without.json"
    without.write_text('{"experiment_id": "1"}')
    with pytest.raises(DataError, match="without.json: no run_id in it; run the train stage again"):
        read_run_info(without)
    empty = tmp_path / "empty.json"
    empty.write_text('{"run_id": ""}')
    with pytest.raises(DataError, match="run_id must be a non-empty string"):
        read_run_info(empty)


def _ended_process() -> tuple[int, float]:
    """The pid and start time of a process that has exited (and been reaped)."""
    import psutil

    child = subprocess.Popen(["sleep", "30"])
    started = psutil.Process(child.pid).create_time()
    child.kill()
    child.wait()
    return child.pid, started


def test_runs_left_running_by_ended_processes_of_this_host_are_failed_and_no_others(store, client, config):
    import socket

    import psutil

    from vaelab.tracking import orphans

    experiment_id = open_experiment(config.base.experiment, store)
    host = socket.gethostname()
    dead_pid, dead_started = _ended_process()

    def running(name: str, owner: dict[str, str]) -> str:
        return client.create_run(experiment_id, run_name=name, tags=owner).info.run_id

    killed = running("killed", {orphans.HOST_TAG: host, orphans.PID_TAG: str(dead_pid), orphans.STARTED_TAG: repr(dead_started)})
    # This test's own pid, recorded with another start time: a process that ended and whose pid came back.
    reused = running("reused", {orphans.HOST_TAG: host, orphans.PID_TAG: str(os.getpid()), orphans.STARTED_TAG: "1.5"})
    alive = running(
        "alive", {orphans.HOST_TAG: host, orphans.PID_TAG: str(os.getpid()), orphans.STARTED_TAG: repr(psutil.Process().create_time())}
    )
    elsewhere = running("elsewhere", {orphans.HOST_TAG: "another-host", orphans.PID_TAG: str(dead_pid), orphans.STARTED_TAG: "1.5"})
    untagged = running("untagged", {})

    with runs.start_run(config) as new:  # opening the experiment for a new run is when orphans are found
        assert client.get_run(new.info.run_id).data.tags[orphans.PID_TAG] == str(os.getpid())

    status = {run_id: client.get_run(run_id).info.status for run_id in (killed, reused, alive, elsewhere, untagged)}
    assert status == {killed: "FAILED", reused: "FAILED", alive: "RUNNING", elsewhere: "RUNNING", untagged: "RUNNING"}
    assert client.get_run(killed).data.tags[orphans.FAILURE_TAG] == f"process {dead_pid} on {host} ended without closing the run (killed?)"
    for run_id in (alive, elsewhere, untagged):
        client.set_terminated(run_id)  # leave the module's store tidy for the tests after this one
