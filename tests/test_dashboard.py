"""`vaelab dashboard`: a real optuna-dashboard process on a finished tiny study, asked over its HTTP API
for the study, its trials and each finished trial's two pictures, and looked at in Debian's chromium (driven by
Playwright; skipped locally without them, a failure under CI=true); and the one-line errors before it starts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from vaelab import dashboard_command
from vaelab.sweep import coordinator
from vaelab.sweep.objective import LOSS_PICTURE, SAMPLE_PICTURE
from vaelab.sweep.storage import ARTIFACTS_ENV, open_storage
from vaelab.workers import free_ports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START_SECONDS = 60
CHROMIUM = "/usr/bin/chromium"


def write_params(config, folder: Path) -> Path:
    path = folder / "dashboard-params.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read(), answer.headers.get("Content-Type", "")


def get_json(url: str) -> dict:
    return json.loads(get(url)[0])


def wait_for_dashboard(process: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}")
        try:
            get_json(f"{base}/api/meta")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer at {base} within {START_SECONDS} s")


@pytest.mark.slow
def test_dashboard_serves_the_study_its_trials_and_each_finished_trials_pictures(sweep_config, sweep_workdir, monkeypatch):
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    # A hopeless learning-rate range, so that the median pruner stops some trials: they have pictures too.
    space = {"learning_rate": {"low": 1e-7, "high": 1e-2, "log": True}}
    config = sweep_config(sweep__pruner="median", sweep__space=space)
    coordinator.run_sweep(config, n_trials=4)

    states = check_dashboard(config, sweep_workdir, "sweeps/optuna.journal", n_trials=4)
    assert TrialState.PRUNED in states


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_on_postgresql_shows_the_pictures_of_trials_run_in_worker_processes(
    sweep_config, sweep_workdir, sweep_database, monkeypatch
):
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    # Each trial in a fresh process, which must put its pictures where the coordinator's folder says.
    config = sweep_config(sweep__storage=sweep_database, sweep__trials_per_process=1)
    coordinator.run_sweep(config, n_trials=2)

    assert check_dashboard(config, sweep_workdir, sweep_database, n_trials=2) == {TrialState.COMPLETE}


def check_dashboard(config, workdir: Path, storage: str, n_trials: int) -> set[TrialState]:
    """Start `vaelab dashboard` on the finished study "tiny" and check what its HTTP API serves: the study, every
    trial, and both pictures of each finished trial, byte for byte those in sweeps/artifacts/. Returns the states."""
    trials = optuna.load_study(study_name="tiny", storage=open_storage(storage)).get_trials()
    finished = {trial.number: trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len(finished) == n_trials, [(t.state, t.params) for t in trials]

    with running_dashboard(config, workdir) as (base, first_line):
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [study["study_name"] for study in studies] == ["tiny"]
        study_id = studies[0]["study_id"]
        assert first_line == f"open {base}/dashboard/studies/{study_id}"
        detail = get_json(f"{base}/api/studies/{study_id}")
        served = {trial["number"]: trial for trial in detail["trials"]}
        assert served.keys() == {trial.number for trial in trials}

        store = FileSystemArtifactStore(str(workdir / "sweeps" / "artifacts"))
        for number, trial in finished.items():
            shown = served[number]
            assert shown["state"] == trial.state.name.capitalize()
            assert {param["name"] for param in shown["params"]} == trial.params.keys()
            artifacts = shown["artifacts"]
            assert sorted(artifact["filename"] for artifact in artifacts) == sorted([SAMPLE_PICTURE, LOSS_PICTURE]), number
            for artifact in artifacts:
                body, content_type = get(f"{base}/artifacts/{study_id}/{shown['trial_id']}/{artifact['artifact_id']}")
                assert content_type == "image/png"
                assert body.startswith(PNG_SIGNATURE)
                with store.open_reader(artifact["artifact_id"]) as stored:
                    assert body == stored.read()
    return {trial.state for trial in finished.values()}


@pytest.mark.slow
def test_trial_page_shows_both_pictures_in_a_browser(sweep_config, sweep_workdir, monkeypatch):
    if shutil.which(CHROMIUM) is None or importlib.util.find_spec("playwright") is None:
        reason = f"needs Debian's chromium at {CHROMIUM} and the playwright package"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    config = sweep_config()
    coordinator.run_sweep(config, n_trials=1)

    with running_dashboard(config, sweep_workdir) as (_, first_line), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            # The printed address is the study's analytics; its trials list shows the first trial's detail.
            page.goto(first_line.removeprefix("open ") + "/trials")
            page.get_by_text("Artifacts").wait_for(timeout=30_000)
            pictures = page.locator("img[src*='/artifacts/']")
            pictures.nth(1).wait_for(timeout=30_000)
            page.wait_for_function("() => [...document.querySelectorAll(\"img[src*='/artifacts/']\")].every(img => img.complete)")
            shown = pictures.evaluate_all("images => images.map(image => [image.alt, image.naturalWidth])")
        finally:
            browser.close()
    assert sorted(alt for alt, _ in shown) == sorted([SAMPLE_PICTURE, LOSS_PICTURE])
    assert all(width > 0 for _, width in shown), shown  # decoded: the browser got each PNG


@contextlib.contextmanager
def running_dashboard(config, workdir: Path) -> Iterator[tuple[str, str]]:
    """`vaelab dashboard` on a free port in ``workdir``, once it answers: its base URL and the line it printed."""
    port = free_ports(1)[0]
    command = [sys.executable, "-m", "vaelab.cli", "dashboard", "--params", str(write_params(config, workdir)), "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        wait_for_dashboard(process, base)
        yield base, first_line
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_no_journal_file_is_one_line_error_and_creates_none(sweep_config, sweep_workdir, capsys):
    params = write_params(sweep_config(), sweep_workdir)

    with pytest.raises(SystemExit) as caught:
        dashboard_command.main(["--params", str(params)])

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error == "vaelab: error: no study yet: sweeps/optuna.journal does not exist; run `make sweep` first\n"
    assert not (sweep_workdir / "sweeps").exists()


def test_storage_without_the_study_is_one_line_error_naming_the_studies_there(sweep_config, sweep_workdir, capsys):
    params = write_params(sweep_config(), sweep_workdir)
    optuna.create_study(study_name="other", storage=open_storage("sweeps/optuna.journal"))

    with pytest.raises(SystemExit) as caught:
        dashboard_command.main(["--params", str(params), "--study", "missing"])

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error == (
        "vaelab: error: no study 'missing' yet in sweeps/optuna.journal (it has 'other'); run `make sweep` first or pass --study\n"
    )


def test_port_in_use_is_one_line_error(sweep_config, sweep_workdir, capsys):
    params = write_params(sweep_config(), sweep_workdir)
    optuna.create_study(study_name="tiny", storage=open_storage("sweeps/optuna.journal"))

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as caught:
            dashboard_command.main(["--params", str(params), "--port", str(port)])

    assert caught.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == f"vaelab: error: port {port} on 127.0.0.1 is in use, perhaps by another dashboard; choose another with --port"
