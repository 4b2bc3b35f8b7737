"""`mlflow models serve` on a logged vaelab model answers JSON on 127.0.0.1: samples, codes, and a 400 for a bad mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from vaelab.workers import free_ports

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(logged: dict[str, str]):
    port = free_ports(1)[0]
    bin_dir = Path(sys.executable).parent  # the server runs `uvicorn` from PATH, as in an activated venv
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": logged["store"],
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    mlflow_cli = bin_dir / "mlflow"
    command = [str(mlflow_cli), "models", "serve", "-m", logged["model_uri"], "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = Path(logged["folder"]) / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=logged["folder"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {process.returncode}: {log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine may accept before it answers
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping in 180 s: {log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _invoke(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=120)


def test_the_server_samples_the_same_images_for_the_same_seed(server: str) -> None:
    body = {"inputs": [[0.0]], "params": {"mode": "sample", "n": 4, "seed": 7}}
    first, again = _invoke(server, body), _invoke(server, body)
    assert first.status_code == 200, first.text[:2000]
    images = np.asarray(first.json()["predictions"], dtype="float32")
    assert images.shape == (4, 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert again.json() == first.json()
    other = _invoke(server, {**body, "params": {"mode": "sample", "n": 4, "seed": 8}})
    assert np.asarray(other.json()["predictions"]).shape == (4, 28, 28, 1)
    assert other.json() != first.json()


def test_the_server_encodes_images_to_mean_and_log_variance(server: str) -> None:
    images = np.random.default_rng(0).random((3, 28, 28, 1)).round(3).tolist()
    answer = _invoke(server, {"inputs": images, "params": {"mode": "encode"}})
    assert answer.status_code == 200, answer.text[:2000]
    codes = answer.json()["predictions"]
    assert set(codes) == {"mean", "log_var"}
    assert np.asarray(codes["mean"]).shape == (3, 2)
    assert np.asarray(codes["log_var"]).shape == (3, 2)


def test_the_server_refuses_a_wrong_mode_and_a_wrong_z_dim_with_400_and_the_reason(server: str) -> None:
    wrong_mode = _invoke(server, {"inputs": [[0.0]], "params": {"mode": "dream"}})
    assert wrong_mode.status_code == 400
    assert "mode must be one of reconstruct, encode, decode, sample, interpolate; received mode='dream'" in wrong_mode.json()["message"]
    wrong_z = _invoke(server, {"inputs": [[0.0, 1.0, 2.0]], "params": {"mode": "decode"}})
    assert wrong_z.status_code == 400
    assert "latent vectors must have shape (N, 2) for this model (z_dim=2); received shape (1, 3)" in wrong_z.json()["message"]
    wrong_type = _invoke(server, {"inputs": [[0.0]], "params": {"mode": "sample", "n": "many"}})
    assert wrong_type.status_code == 400
