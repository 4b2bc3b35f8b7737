"""The tracking server of `make server` on a real PostgreSQL (127.0.0.1:5432, user postgres, trust auth),
and the client's retries when a server is down or answers 5xx.

The postgres tests start scripts/tracking_server.py on a free port with their own database, which the
script creates and the test drops afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient
from mlflow_helpers import experiment_runs
from tiny import write_bar_splits, write_params

from vaelab.tracking.store import with_retries

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "scripts" / "tracking_server.py"
EPOCHS = 8


@pytest.fixture
def database(scratch_databases):
    """The URL of a database that does not exist yet (the server script creates it); dropped afterwards."""
    name = scratch_databases.new("vaelab_server", create=False)
    return f"postgresql://postgres@127.0.0.1:5432/{name}", scratch_databases.admin, name


class Server:
    """scripts/tracking_server.py in its own process group, so a crash can be simulated with one SIGKILL."""

    def __init__(self, backend: str, folder: Path):
        self.backend, self.folder, self.port = backend, folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        command = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--backend-store-uri",
            self.backend,
            "--port",
            str(self.port),
            "--artifacts-destination",
            str(self.folder / "mlartifacts-server"),
            "--workers",
            "1",
        ]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).text == "OK":
                    return
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine may accept before it answers
                pass
            time.sleep(0.5)
        pytest.fail(f"no /health answer within {timeout} s: {(self.folder / 'server.log').read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def server(database, tmp_path: Path):
    backend, _, _ = database
    running = Server(backend, tmp_path)
    try:
        yield running
    finally:
        running.kill()


@pytest.mark.parametrize("failures", [1, 3])
def test_5xx_answers_are_retried_until_the_server_recovers(failures: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own per-request retries are switched off here, so only vaelab's with_retries is at work."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    paths: list[str] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_GET(self):  # http.server's naming
            paths.append(self.path)
            status, body = (503, {"error_code": "TEMPORARILY_UNAVAILABLE"}) if len(paths) <= failures else (200, EXPERIMENT)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = MlflowClient(f"http://127.0.0.1:{httpd.server_port}")
        experiment = with_retries(lambda: client.get_experiment("0"), first_delay=0.01)
    finally:
        httpd.shutdown()
    assert experiment.name == "Default"
    assert len(paths) == failures + 1


EXPERIMENT = {"experiment": {"experiment_id": "0", "name": "Default", "artifact_location": "x", "lifecycle_stage": "active"}}


@pytest.mark.slow
@pytest.mark.postgres
def test_server_script_creates_the_database_and_answers_health_on_loopback_only(server: Server, database) -> None:
    _, admin, name = database
    server.start()

    assert requests.get(f"{server.url}/health", timeout=30).text == "OK"
    with admin.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert cursor.fetchone() == (1,)
    other = _non_loopback_address()
    if other:  # nothing listens on the machine's network address: 127.0.0.1 is the default
        with pytest.raises(OSError), socket.create_connection((other, server.port), timeout=2):
            pass
    client = MlflowClient(server.url)
    run = client.create_run(client.create_experiment("health"))
    client.log_text(run.info.run_id, "proxied", "note.txt")  # artifacts go through the server to its folder
    assert [p.read_text() for p in (server.folder / "mlartifacts-server").rglob("note.txt")] == ["proxied"]


def test_make_server_runs_the_same_script_on_127_0_0_1_port_5001() -> None:
    planned = subprocess.run(["make", "-n", "server"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    line = next(line for line in planned.stdout.splitlines() if "tracking_server.py" in line)
    assert "--host 127.0.0.1" in line and "--port 5001" in line


@pytest.mark.slow
@pytest.mark.postgres
def test_training_survives_a_server_restart_with_all_8_epochs_logged(server: Server, tmp_path: Path) -> None:
    server.start()
    _tiny_project(tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "TF_CPP_MIN_LOG_LEVEL": "2"}
    training = subprocess.Popen(
        [sys.executable, str(ROOT / "pipeline" / "train.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = MlflowClient(server.url)
        logged_before_crash = _wait_for_first_epoch(client, training)
        server.kill()
        time.sleep(2)  # the trainer meets a dead server for a while
        server.start()
        output, _ = training.communicate(timeout=300)
    finally:
        if training.poll() is None:
            training.kill()

    assert training.returncode == 0, output[-4000:]
    assert logged_before_crash < EPOCHS  # the crash really fell inside the training
    (run,) = experiment_runs(client, "vaelab-mnist")
    assert run.info.status == "FINISHED"
    for key in ("loss", "val_loss", "kl_loss", "learning_rate"):
        steps = sorted(metric.step for metric in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, EPOCHS + 1)), (key, steps)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"history.csv", "params.yaml"}


def _wait_for_first_epoch(client: MlflowClient, training: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert training.poll() is None, training.communicate()[0][-4000:]
        experiment = client.get_experiment_by_name("vaelab-mnist")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs:
            logged = len(client.get_metric_history(runs[0].info.run_id, "loss"))
            if logged:
                return logged
        time.sleep(0.2)
    pytest.fail("no epoch logged in time")


def _tiny_project(root: Path) -> None:
    write_params(root, ROOT, {"train": {"epochs": EPOCHS}})
    write_bar_splits(root / "data" / "processed", sizes=(256, 32, 32))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
