"""Promotion end to end: a tiny study's winner trained, evaluated and registered by the real pipeline as a DVC
experiment, recorded on the study and its MLflow parent run; a second promote trains nothing; a study on
PostgreSQL promotes the same way.

A throwaway git+DVC copy of the repository on real MNIST (from the package registry), shrunk to seconds per
stage, with its baseline `dvc repro` committed as a user would before sweeping.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from mlflow_helpers import experiment_runs
from repo_copy import make_repo_copy, run_ok
from tiny import tiny_settings

from vaelab.sweep.promote import PROMOTED_ATTR, RECORD_FILE, experiment_name
from vaelab.sweep.report import PARENT_RUN_ATTR
from vaelab.sweep.storage import open_storage

pytestmark = [pytest.mark.slow, pytest.mark.registry]

SHRINK = tiny_settings(
    {
        "data": {"max_train": 512, "max_test": 256},
        "train": {"epochs": 2, "batch_size": 64},
        "evaluate": {"latent_points": 200, "nll_images": 64, "nll_samples": 8, "quality_samples": 500},
        "classifier": {"epochs": 1},
        # One epoch on 256 images per trial, no pruning: both trials complete, so one of them wins.
        "sweep": {"epochs": 1, "max_train": 256, "n_trials": 2, "pruner": "none", "timeout_minutes": None},
    }
)
EXPERIMENT = "vaelab-mnist"
MODEL = "vaelab-mnist"
NLL = "test_nll_k8_grayscale_nats"


def vaelab(args: list[str], root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=root, env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("promote")
    env = make_repo_copy(root, SHRINK)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    run_ok(["dvc", "repro"], root, env)
    run_ok(["git", "add", "-A"], root, env)
    run_ok(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline results"], root, env)
    return root, env


@pytest.fixture(scope="module")
def promoted(project: tuple[Path, dict]) -> dict:
    """`vaelab sweep --promote` of study s1 on the default journal file: what it printed and recorded."""
    root, env = project
    done = vaelab(["sweep", "--study", "s1", "--promote"], root, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"stdout": done.stdout, "stderr": done.stderr, "record": json.loads((root / "sweeps/s1" / RECORD_FILE).read_text())}


def client_of(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs_of_experiment(root: Path, name: str) -> list:
    return [run for run in experiment_runs(client_of(root), EXPERIMENT) if run.data.tags.get("dvc.exp_name") == name]


def test_the_winner_becomes_a_dvc_experiment_trained_with_the_pipelines_epochs(project, promoted) -> None:
    root, env = project
    study = optuna.load_study(study_name="s1", storage=open_storage(str(root / "sweeps/optuna.journal")))
    winner = study.best_trial
    name = experiment_name("s1", winner.number)
    assert promoted["record"]["experiment"] == name == f"s1-trial{winner.number}"

    shown = json.loads(run_ok(["dvc", "exp", "show", "--json"], root, env).stdout)
    revs = {rev["name"]: rev["data"] for baseline in shown for exp in baseline.get("experiments") or [] for rev in exp["revs"]}
    params = revs[name]["params"]["params.yaml"]["data"]
    # Every digit the study sampled, and the pipeline's own epochs, not the trial's one.
    assert {key: params["train"][key] for key in winner.params} == winner.params
    assert params["train"]["epochs"] == 2
    assert revs[name]["metrics"]["reports/metrics.json"]["data"][NLL] == promoted["record"]["test_metrics"][NLL]

    (run,) = runs_of_experiment(root, name)
    assert run.info.status == "FINISHED"
    assert run.info.run_id == promoted["record"]["run_id"]
    assert [m.step for m in client_of(root).get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    # The workspace is untouched: --temp ran it in a copy.
    assert run_ok(["git", "status", "--porcelain", "params.yaml", "dvc.lock"], root, env).stdout == ""


def test_the_promoted_model_is_registered_and_best_moves_only_if_it_is_better(project, promoted) -> None:
    root, _ = project
    record = promoted["record"]
    client = client_of(root)
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions) == [1, 2]  # the baseline's, then the promoted run's
    assert versions[2].run_id == record["run_id"] and record["model_version"] == 2
    nlls = {number: float(version.tags["test_nll_nats"]) for number, version in versions.items()}
    best = min(nlls, key=lambda number: nlls[number])
    assert int(client.get_model_version_by_alias(MODEL, "best").version) == best == record["best_version"]
    assert f"registered {MODEL} version 2; alias best: " in promoted["stdout"]


def test_the_study_and_its_parent_run_record_the_promotion(project, promoted) -> None:
    root, _ = project
    record = promoted["record"]
    study = optuna.load_study(study_name="s1", storage=open_storage(str(root / "sweeps/optuna.journal")))
    assert study.user_attrs[PROMOTED_ATTR] == record
    parent = client_of(root).get_run(study.user_attrs[PARENT_RUN_ATTR])
    assert parent.data.tags["promoted.experiment"] == record["experiment"]
    assert parent.data.tags["promoted.run_id"] == record["run_id"]
    assert parent.data.metrics[f"promoted.{NLL}"] == record["test_metrics"][NLL]
    assert RECORD_FILE in [item.path for item in client_of(root).list_artifacts(parent.info.run_id)]
    assert parent.info.status == "FINISHED"


def test_a_second_promote_trains_nothing(project, promoted) -> None:
    root, env = project
    name = promoted["record"]["experiment"]
    done = vaelab(["promote", "s1"], root, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dvc exp run" not in done.stderr
    assert "already promoted" in done.stderr
    assert len(runs_of_experiment(root, name)) == 1
    assert len(client_of(root).search_model_versions(f"name = '{MODEL}'")) == 2
    assert f"as DVC experiment {name}" in done.stdout


def test_a_study_on_postgresql_promotes_too(project, promoted, scratch_databases) -> None:
    root, env = project
    url = f"postgresql://postgres@127.0.0.1:5432/{scratch_databases.new('promote')}"
    # Another sampler seed than s1's, so that its winner is a model not trained yet.
    swept = vaelab(["sweep", "--study", "pg", "--storage", url, "--set", "sweep.n_trials=1", "--set", "base.seed=7"], root, env)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "vaelab promote pg" in swept.stdout
    done = vaelab(["promote", "pg", "--storage", url], root, env)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="pg", storage=open_storage(url))
    record = study.user_attrs[PROMOTED_ATTR]
    (run,) = runs_of_experiment(root, f"pg-trial{study.best_trial.number}")
    assert record["run_id"] == run.info.run_id and run.info.status == "FINISHED"
    assert record["model_version"] == 3
    # The experiment ran under the study's settings, not params.yaml's: the seed the sweep was given.
    assert record["overrides"] == {"base.seed": 7, **{f"train.{key}": value for key, value in study.best_trial.params.items()}}
    assert run.data.params["base.seed"] == "7"


def test_a_winner_trained_before_is_recorded_with_the_run_that_trained_it(project, promoted) -> None:
    """Same params as s1's winner: DVC restores the outputs from its run cache and the record names s1's run."""
    root, env = project
    journal = root / "sweeps/optuna.journal"
    winner = optuna.load_study(study_name="s1", storage=open_storage(str(journal))).best_trial
    twin = optuna.create_study(study_name="twin", storage=open_storage(str(journal)))
    twin.add_trial(optuna.trial.create_trial(params=winner.params, distributions=winner.distributions, value=winner.value))
    done = vaelab(["promote", "twin"], root, env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((root / "sweeps/twin" / RECORD_FILE).read_text())
    assert record["experiment"] == "twin-trial0"
    assert record["run_id"] == promoted["record"]["run_id"]
    assert record["test_metrics"] == promoted["record"]["test_metrics"]
    assert "twin-trial0" in run_ok(["dvc", "exp", "ls"], root, env).stdout


def test_promoting_a_study_without_a_complete_trial_is_a_one_line_error(tmp_path: Path, project_root: Path) -> None:
    journal = tmp_path / "study.journal"
    study = optuna.create_study(study_name="nothing", storage=open_storage(str(journal)))
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    args = ["promote", "nothing", "--storage", str(journal), "--params", str(project_root / "params.yaml")]
    done = subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (
        "vaelab: error: study 'nothing' has no COMPLETE trial to promote (PRUNED: 1, FAIL: 1); run `vaelab sweep --study nothing` first\n"
    )
    unknown = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "promote", "other", "--storage", str(journal), "--params", str(project_root / "params.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("vaelab: error: no study 'other' yet in ") and unknown.stderr.count("\n") == 1


def test_the_winner_and_the_overrides_follow_the_studys_recorded_settings(tmp_path: Path, project_root: Path) -> None:
    """Swept with two objectives, chosen by params and with another seed; promoted with params.yaml's settings."""
    from vaelab.config.load import load_config, with_overrides
    from vaelab.sweep.promote import SETTINGS_ATTR, experiment_overrides, record_settings, winner

    project_config = load_config(project_root / "params.yaml")
    swept = with_overrides(
        project_config,
        {"base.seed": 7, "sweep.objectives": ["val_nll", "params"], "sweep.choose_by": "params", "sweep.n_trials": 5},
    )
    study = optuna.create_study(study_name="two", directions=["minimize", "minimize"], storage=open_storage(str(tmp_path / "j")))
    record_settings(study, swept)
    record_settings(study, project_config)  # a resumed study keeps what it started with
    assert study.user_attrs[SETTINGS_ATTR]["base.seed"] == 7
    distributions: dict[str, optuna.distributions.BaseDistribution] = {"z_dim": optuna.distributions.IntDistribution(2, 64)}
    for z_dim, values in ((4, [100.0, 9000.0]), (8, [90.0, 12000.0]), (16, [95.0, 30000.0])):
        study.add_trial(optuna.trial.create_trial(params={"z_dim": z_dim}, distributions=distributions, values=values))
    chosen = winner(study, project_config)  # params.yaml alone would choose by val_nll: trial 1
    assert chosen is not None and chosen.number == 0
    # sweep.* keys never reach the experiment; the seed does, then the trial's params.
    assert experiment_overrides(study, chosen, project_config, project_root) == {"base.seed": 7, "train.z_dim": 4}
