"""The version rule of the UI view (vaelab.tracking.view): on an MLflow release other than the tested one, `vaelab ui` writes no
view-state tags, warns once in one line, and still prints an address that opens the experiment's runs."""

from __future__ import annotations

import logging
import re

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from vaelab.cli import main
from vaelab.tracking import view as ui


def test_the_tested_release_is_the_installed_one() -> None:
    # requirements.lock pins the release the browser test checks; a re-lock to another one must move TESTED_MLFLOW.
    assert ui.ui_state_tested(), (mlflow.__version__, ui.TESTED_MLFLOW)
    assert ui.ui_state_tested(f"{ui.TESTED_MLFLOW}.9")
    assert not ui.ui_state_tested("3.18.0")
    assert not ui.ui_state_tested("4.0.0rc1")
    assert not ui.ui_state_tested("3.1.0")  # 3.1 is not 3.17 though "3.17".startswith("3.1")


def test_an_untested_mlflow_gets_no_view_one_warning_and_the_plain_runs_address(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mlflow, "__version__", "3.99.0")
    ui._warn_untested_once.cache_clear()
    monkeypatch.chdir(mlflow_uri.removeprefix("sqlite:///").rsplit("/", 1)[0])  # no params.yaml: --experiment only
    caplog.set_level(logging.WARNING)

    for _ in range(2):  # a second start in the same process does not warn again
        with pytest.raises(SystemExit) as exit_info:
            main(["ui", "--print-only", "--experiment", "untested", "--port", "5123"])
        assert exit_info.value.code == 0

    printed = capsys.readouterr().out.strip().splitlines()
    experiment = MlflowClient(mlflow_uri).get_experiment_by_name("untested")
    assert experiment is not None
    address = f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}/runs"
    assert printed == [f"open {address}", f"open {address}"]  # no "charts" line: there is no saved view to open
    assert not any(key.startswith(("mlflow.sharedViewState.", ui.KIND_TAG)) for key in experiment.tags), experiment.tags
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0]
    assert re.search(r"MLflow 3\.99\.0 is not the release .* tested with \(3\.17\.x\)", warnings[0]), warnings[0]


def test_the_tested_release_gets_the_view_and_its_charts_address(mlflow_uri: str, monkeypatch, capsys) -> None:
    ui._warn_untested_once.cache_clear()
    monkeypatch.chdir(mlflow_uri.removeprefix("sqlite:///").rsplit("/", 1)[0])
    with pytest.raises(SystemExit) as exit_info:
        main(["ui", "--print-only", "--experiment", "tested", "--port", "5123"])
    assert exit_info.value.code == 0

    experiment = MlflowClient(mlflow_uri).get_experiment_by_name("tested")
    assert experiment is not None
    assert ui.VIEW_TAG in experiment.tags
    runs = f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}/runs"
    query = f"workflowType=machine_learning&viewStateShareKey={ui.VIEW_KEY}"
    assert capsys.readouterr().out.strip().splitlines() == [f"open {runs}?{query}", f"charts {runs}?{query}&compareRunsMode=CHART"]
