"""vaelab.sweep on tiny data with a real Optuna journal-file storage and a real SQLite MLflow store."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sweep_helpers import IMAGE_SHAPE, mlflow_runs, square_images, study_in

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.data.processed import Splits, load_splits
from vaelab.data.shards import ShardedImages
from vaelab.errors import ConfigError, TrainingError, VaelabError
from vaelab.sweep import coordinator
from vaelab.sweep.objective import Objective
from vaelab.sweep.report import SURPLUS_ATTR, objective_description, objective_metric, winner_command
from vaelab.sweep.storage import (
    OBJECTIVE_ATTR,
    STORAGE_ENV,
    WORKER_ATTR,
    make_pruner,
    open_storage,
    open_study,
    resolve_storage,
    worker_id,
)

OBJECTIVE = "val_nll_k20_grayscale_nats"  # TINY_SWEEP's evaluate.nll_samples on data.binarize none


# --- storage, space and small pieces (fast) ---


def test_storage_precedence_is_flag_then_environment_then_params_then_journal_file(sweep_config, monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert resolve_storage(None, sweep_config()) == "sweeps/optuna.journal"
    configured = sweep_config(sweep__storage="sqlite:///from-params.db")
    assert resolve_storage(None, configured) == "sqlite:///from-params.db"
    monkeypatch.setenv(STORAGE_ENV, "postgresql://u@h/from-env")
    assert resolve_storage(None, configured) == "postgresql://u@h/from-env"
    assert resolve_storage("flag.journal", configured) == "flag.journal"


def test_unreachable_database_is_one_line_error_without_the_password():
    with pytest.raises(VaelabError) as caught:
        open_storage("postgresql://optuna:hunter2-secret@127.0.0.1:1/optuna")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "postgresql://optuna:***@127.0.0.1:1/optuna" in message
    assert "\n" not in message


def test_sqlite_storage_is_refused_for_several_workers(sweep_config, sweep_workdir):
    with pytest.raises(ConfigError, match="database is locked.*journal file"):
        coordinator.run_sweep(sweep_config(), workers=2, storage="sqlite:///optuna.db")
    assert not (sweep_workdir / "optuna.db").exists()


def test_cli_rejects_zero_workers(capsys):
    with pytest.raises(SystemExit) as caught:
        coordinator.main(["--workers", "0"])
    assert caught.value.code == 2
    assert "expected a positive integer, received '0'" in capsys.readouterr().err


def tiny_splits() -> Splits:
    rng = np.random.default_rng(1)
    x = square_images(12, rng)
    y = np.zeros(12, dtype=np.uint8)
    return Splits(x, y, x[:4], y[:4], x[:4], y[:4], IMAGE_SHAPE, ("square",))


def test_suggest_samples_integers_for_integer_settings_and_floats_otherwise(sweep_config):
    space = {
        "z_dim": {"low": 2, "high": 64, "log": True},
        "batch_size": {"low": 16, "high": 128},
        "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    }
    objective = Objective(sweep_config(sweep__space=space), tiny_splits())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        values = objective.suggest(trial)
        assert set(values) == {"z_dim", "batch_size", "learning_rate"}
        assert type(values["z_dim"]) is int and 2 <= values["z_dim"] <= 64
        assert type(values["batch_size"]) is int and 16 <= values["batch_size"] <= 128
        assert type(values["learning_rate"]) is float and 1e-4 <= values["learning_rate"] <= 3e-3
        assert trial.distributions["z_dim"] == optuna.distributions.IntDistribution(2, 64, log=True)
        assert trial.distributions["learning_rate"] == optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)
        config = objective.trial_config(values)
        assert (config.train.z_dim, config.train.batch_size) == (values["z_dim"], values["batch_size"])
        assert config.train.epochs == 2  # sweep.epochs
        study.tell(trial, 1.0)


def test_objective_caps_the_training_set_and_keeps_validation_whole(sweep_config):
    objective = Objective(sweep_config(sweep__max_train=5), tiny_splits())
    assert objective.splits.x_train.shape == (5, *IMAGE_SHAPE)
    np.testing.assert_array_equal(objective.splits.x_train, tiny_splits().x_train[:5])
    assert len(objective.splits.x_val) == 4


def test_objective_leaves_sharded_splits_on_disk(sweep_config, sweep_processed):
    splits = load_splits(sweep_processed)
    objective = Objective(sweep_config(), splits)
    assert isinstance(objective.splits.x_train, ShardedImages) and isinstance(objective.splits.x_val, ShardedImages)
    assert len(objective.splits.x_train) == len(objective.splits.y_train) == 192  # sweep.max_train
    np.testing.assert_array_equal(objective.splits.x_train[-3:], splits.x_train[189:192])
    assert len(objective.splits.x_val) == 64


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"dropout_rate": {"low": 0.0, "high": 1.0}}, "sweep.space.dropout_rate: the range end 1 is not a valid train.dropout_rate"),
        ({"batch_size": {"low": 16.2, "high": 16.8}}, "sweep.space.batch_size: no integer in [16.2, 16.8]"),
    ],
)
def test_objective_rejects_ranges_whose_ends_are_not_valid_settings(sweep_config, space, message):
    with pytest.raises(ConfigError) as caught:
        Objective(sweep_config(sweep__space=space), tiny_splits())
    assert str(caught.value).startswith(message)


def test_objective_is_named_after_the_evaluate_stage_nll_on_the_validation_split(sweep_config):
    assert objective_metric(sweep_config()) == "val_nll_k20_grayscale_nats"
    assert objective_metric(sweep_config(evaluate__nll_samples=5000)) == "val_nll_k5000_grayscale_nats"
    assert objective_metric(sweep_config(data__binarize="dynamic")) == "val_nll_k20_binarized_nats"
    assert objective_metric(sweep_config(data__binarize="fixed", evaluate__nll_samples=1)) == ("val_nll_k1_binarized_nats")
    assert objective_description(sweep_config(data__binarize="fixed", evaluate__nll_images=None)) == (
        "val_nll_k20_binarized_nats (validation importance-sampled NLL, K=20, binarized data, all images; nats, lower is better)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("pruning_images", [None, 48, 10])
def test_a_trial_reports_the_evaluate_stage_nll_of_its_model_on_the_validation_images(
    sweep_config, sweep_processed, sweep_workdir, mlflow_uri, monkeypatch, pruning_images
):
    """Each epoch's value is estimate_nll with evaluate.* on the validation split, recomputed here on the model;
    before the last epoch on the first sweep.pruning_nll_images of its images, if that is fewer than all 48."""
    import keras

    from vaelab import training
    from vaelab.evaluation import likelihood

    config = sweep_config(sweep__pruning_nll_images=pruning_images)
    x_val = np.asarray(load_splits(sweep_processed).x_val)  # all 64; estimate_nll picks its 48
    full: dict[int, float] = {}
    first_ten: dict[int, float] = {}

    class Recompute(keras.callbacks.Callback):  # runs after the sweep's reporter, on the same weights
        def on_epoch_end(self, epoch, logs=None):
            full[epoch + 1] = likelihood.estimate_nll(self.model, x_val, 20, 48, config.base.seed, 24)
            first_ten[epoch + 1] = likelihood.estimate_nll(self.model, x_val, 20, 48, config.base.seed, 24, first=10)

    real_train = training.train

    def train_and_recompute(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=[*callbacks, Recompute()], **kwargs)

    monkeypatch.setattr(training, "train", train_and_recompute)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(Objective(config, load_splits(sweep_processed)), n_trials=1)

    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert sorted(full) == [1, 2]
    assert first_ten[1] != full[1]  # so that the two cases below differ
    client = MlflowClient(mlflow_uri)
    run_id = trial.user_attrs["mlflow_run_id"]
    history = {(m.step, m.value) for m in client.get_metric_history(run_id, OBJECTIVE)}
    if pruning_images == 10:
        # The pruner saw the 10-image estimate after epoch 1; MLflow has it under its own name.
        assert trial.intermediate_values == {1: first_ten[1], 2: full[2]}
        assert history == {(2, full[2])}
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, f"{OBJECTIVE}_first10")] == [(1, first_ten[1])]
    else:  # null, or all the scored images: the full estimate after every epoch
        assert trial.intermediate_values == full
        assert history == set(full.items())
    # The study's value is the full estimate after the last epoch, exactly, whatever the pruner saw before it.
    assert trial.value == full[2]
    assert client.get_run(run_id).data.metrics[f"final_{OBJECTIVE}"] == full[2]


def test_winner_command_keeps_every_digit():
    best = {"train.z_dim": 8, "train.r_loss_factor": 1234.5, "train.learning_rate": 0.00041234567891234}
    assert winner_command(best) == ("dvc exp run -S train.z_dim=8 -S train.r_loss_factor=1234.5 -S train.learning_rate=0.00041234567891234")


def test_trial_left_running_by_a_dead_local_worker_is_failed(sweep_config, sweep_workdir):
    storage = open_storage("sweeps/optuna.journal")
    study = open_study(sweep_config(), storage, "orphans")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan, alive = study.ask(), study.ask()
    orphan.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{ended.stdout.strip()}")
    alive.set_user_attr(WORKER_ATTR, worker_id())

    assert coordinator._next_step(study, n_trials=2, deadline=None, heartbeat=False) == "run"
    states = {trial.number: trial.state for trial in study.get_trials()}
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING}
    # One trial still running and one wanted: wait for it rather than start a second.
    assert coordinator._next_step(study, n_trials=1, deadline=None, heartbeat=False) == "wait"


def test_next_step_stops_at_the_total_the_deadline_or_too_many_failures(sweep_config, sweep_workdir):
    study = open_study(sweep_config(), open_storage("sweeps/optuna.journal"), "budget")
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL, TrialState.FAIL):
        study.tell(study.ask(), 1.0 if state == TrialState.COMPLETE else None, state=state)

    def step(n_trials, deadline=None):
        return coordinator._next_step(study, n_trials, deadline, heartbeat=False)

    assert step(2) == "stop"  # COMPLETE and PRUNED both count
    assert step(3) == "run"  # FAIL does not
    assert step(3, deadline=time.time() - 1) == "stop"
    assert step(3, deadline=time.time() + 60) == "run"
    for _ in range(3):
        study.tell(study.ask(), state=TrialState.FAIL)
    assert step(3) == "stop"  # 6 failures = 2 * n_trials: the space is broken
    assert step(4) == "run"


def test_a_trial_runs_only_if_fewer_than_n_trials_before_it_hold_a_slot(sweep_config, sweep_workdir):
    study = open_study(sweep_config(), open_storage("sweeps/optuna.journal"), "slots")
    study.tell(study.ask(), 1.0)  # 0: COMPLETE, holds a slot
    study.tell(study.ask(), state=TrialState.FAIL)  # 1: FAIL, holds none
    study.enqueue_trial({})  # 2: WAITING, a retry's slot
    claims = [study.ask(), study.ask()]  # 2 taken from the queue, then a new trial 3
    assert [trial.number for trial in claims] == [2, 3]
    objective = coordinator._within_budget(lambda trial: 5.0, n_trials=2)

    with pytest.raises(coordinator.SurplusTrial, match="not run: earlier trials already hold all sweep.n_trials=2 slots"):
        objective(claims[1])  # trials 0 and 2 fill the budget of 2
    assert objective(claims[0]) == 5.0  # only trial 0 is before 2: the lower number wins the slot
    trial = study.get_trials()[3]
    assert trial.user_attrs[SURPLUS_ATTR] is True
    assert trial.user_attrs["fail_reason"].startswith("not run: ")
    assert trial.user_attrs[WORKER_ATTR] == worker_id()


def test_a_trial_that_dies_of_an_unexpected_error_records_why_without_a_password(sweep_config, sweep_workdir):
    study = open_study(sweep_config(), open_storage("sweeps/optuna.journal"), "errors")

    def store_down(trial):
        raise OSError("could not connect to postgresql://user:pg-secret@dbhost/optuna\nsecond line")

    def diverged(trial):
        raise TrainingError("loss is NaN")

    def pruned(trial):
        raise optuna.TrialPruned("after epoch 1")

    with pytest.raises(OSError):
        study.optimize(coordinator._within_budget(store_down, n_trials=3), n_trials=1)
    study.optimize(coordinator._within_budget(diverged, n_trials=3), n_trials=1, catch=(TrainingError,))
    study.optimize(coordinator._within_budget(pruned, n_trials=3), n_trials=1)
    first, second, third = study.get_trials()
    assert first.state == TrialState.FAIL
    assert first.user_attrs["fail_reason"] == "OSError: could not connect to postgresql://user:***@dbhost/optuna"
    assert "fail_reason" not in second.user_attrs  # the objective records a TrainingError's own reason
    assert third.state == TrialState.PRUNED and "fail_reason" not in third.user_attrs


def test_surplus_trials_do_not_count_as_failures_of_the_space(sweep_config, sweep_workdir):
    study = open_study(sweep_config(), open_storage("sweeps/optuna.journal"), "surplus")
    for _ in range(2):
        trial = study.ask()
        trial.set_user_attr(SURPLUS_ATTR, True)
        study.tell(trial, state=TrialState.FAIL)
    assert coordinator._next_step(study, 1, None, heartbeat=False) == "run"
    study.tell(study.ask(), state=TrialState.FAIL)
    study.tell(study.ask(), state=TrialState.FAIL)
    assert coordinator._next_step(study, 1, None, heartbeat=False) == "stop"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("median", optuna.pruners.MedianPruner), ("hyperband", optuna.pruners.HyperbandPruner), ("none", optuna.pruners.NopPruner)],
)
def test_pruner_follows_params(sweep_config, name, kind):
    assert type(make_pruner(sweep_config(sweep__pruner=name))) is kind


# --- whole sweeps (slow) ---


@pytest.mark.slow
def test_sweep_runs_exactly_n_trials_then_resumes_to_a_larger_total(sweep_config, sweep_workdir, mlflow_uri, caplog):
    caplog.set_level("INFO", logger="vaelab")
    config = sweep_config(sweep__sampler="tpe")
    summary = coordinator.run_sweep(config, n_trials=2)

    assert (sweep_workdir / "sweeps" / "optuna.journal").is_file()  # the default storage
    study = study_in()
    assert [trial.number for trial in study.get_trials()] == [0, 1]
    assert [trial.state for trial in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert summary["trials"] == {"RUNNING": 0, "COMPLETE": 2, "PRUNED": 0, "FAIL": 0, "WAITING": 0}
    parents, children = mlflow_runs(mlflow_uri)
    assert len(parents) == 1 and len(children) == 2
    assert sum(f" COMPLETE: {OBJECTIVE}=" in record.getMessage() for record in caplog.records) == 2

    summary = coordinator.run_sweep(config, n_trials=4)

    trials = study.get_trials()
    assert [trial.number for trial in trials] == [0, 1, 2, 3]
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 4
    # The same seed in a fresh process would have proposed trials 0 and 1 again.
    assert len({tuple(sorted(trial.params.items())) for trial in trials}) == 4
    for trial in trials:
        assert trial.intermediate_values.keys() == {1, 2}
        assert trial.value == trial.intermediate_values[2]
    best = study.best_trial
    assert summary["trials"]["COMPLETE"] == 4
    assert (summary["best_trial"], summary["best_value"]) == (best.number, best.value)
    assert summary["objective"] == (
        "val_nll_k20_grayscale_nats (validation importance-sampled NLL, K=20, grayscale data, "
        "a seeded subset of up to 48 images; nats, lower is better)"
    )

    out = sweep_workdir / "sweeps" / "tiny"
    best_params = yaml.safe_load((out / "best_params.yaml").read_text())
    header = f"# best of study 'tiny': trial {best.number}, {OBJECTIVE}={best.value:.6g}\n"
    assert (out / "best_params.yaml").read_text().startswith(header)
    assert best_params == {f"train.{key}": value for key, value in best.params.items()}
    assert type(best_params["train.z_dim"]) is int
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["command"] == winner_command(best_params)
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 1 + 4
    assert sorted(path.name for path in (out / "plots").iterdir()) == [
        "optimization_history.png",
        "parallel_coordinate.png",
        "param_importances.png",
        "slice.png",
    ]

    parents, children = mlflow_runs(mlflow_uri)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.data.tags["mlflow.runName"] == "sweep-tiny"
    assert parent.info.status == "FINISHED"
    assert study.user_attrs[coordinator.PARENT_RUN_ATTR] == parent.info.run_id
    assert parent.data.metrics[f"best_{OBJECTIVE}"] == pytest.approx(best.value)
    assert parent.data.metrics["best.z_dim"] == best.params["z_dim"]
    assert parent.data.metrics["trials_complete"] == 4
    artifacts = {item.path for item in MlflowClient(mlflow_uri).list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "summary.json", "best_params.yaml", "plots"} <= artifacts

    by_number = {int(child.data.params["optuna.trial_number"]): child for child in children}
    assert sorted(by_number) == [0, 1, 2, 3]
    for trial in trials:
        child = by_number[trial.number]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.state"] == "COMPLETE"
        assert child.data.tags["mlflow.runName"].startswith(f"trial-{trial.number}-z{trial.params['z_dim']}-")
        assert child.data.params["train.z_dim"] == str(trial.params["z_dim"])
        assert child.data.params["train.epochs"] == "2"
        assert child.data.metrics[f"final_{OBJECTIVE}"] == pytest.approx(trial.value)
        history = MlflowClient(mlflow_uri).get_metric_history(child.info.run_id, OBJECTIVE)
        assert sorted((m.step, m.value) for m in history) == [
            (1, pytest.approx(trial.intermediate_values[1])),
            (2, pytest.approx(trial.value)),
        ]
        assert {"loss", "val_loss", "kl_loss"} <= child.data.metrics.keys()


@pytest.mark.slow
def test_median_pruner_prunes_trials_with_a_hopeless_learning_rate(sweep_config, sweep_workdir, mlflow_uri):
    space = {"learning_rate": {"low": 1e-7, "high": 1e-2, "log": True}}
    summary = coordinator.run_sweep(sweep_config(sweep__pruner="median", sweep__space=space), n_trials=5)

    trials = study_in().get_trials()
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    assert pruned, [(t.state, t.params, t.intermediate_values) for t in trials]
    assert summary["trials"]["COMPLETE"] + summary["trials"]["PRUNED"] == 5
    assert all(trial.last_step == 1 for trial in pruned)
    _, children = mlflow_runs(mlflow_uri)
    pruned_numbers = {str(trial.number) for trial in pruned}
    pruned_runs = [child for child in children if child.data.params["optuna.trial_number"] in pruned_numbers]
    assert {run.data.tags["optuna.state"] for run in pruned_runs} == {"PRUNED"}
    assert {run.info.status for run in pruned_runs} == {"FINISHED"}


@pytest.mark.slow
def test_diverging_trials_fail_with_their_reason_and_the_study_goes_on(sweep_config, sweep_workdir, mlflow_uri):
    space = {"learning_rate": {"low": 1e-3, "high": 1e5, "log": True}}
    summary = coordinator.run_sweep(sweep_config(sweep__space=space), n_trials=2)

    trials = study_in().get_trials()
    failed = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert failed, [(t.state, t.params) for t in trials]
    assert summary["trials"]["COMPLETE"] == 2 and summary["trials"]["FAIL"] == len(failed)
    for trial in failed:
        reason = trial.user_attrs["fail_reason"]
        assert reason.startswith(("loss became nan", "loss became inf", f"{OBJECTIVE} became")), reason
    _, children = mlflow_runs(mlflow_uri)
    failed_runs = [c for c in children if c.data.tags["optuna.state"] == "FAIL"]
    assert len(failed_runs) == len(failed)
    assert {run.info.status for run in failed_runs} == {"FAILED"}
    assert all(run.data.tags["optuna.fail_reason"] for run in failed_runs)


def test_a_study_scored_by_another_objective_is_not_resumed(tmp_path: Path) -> None:
    storage = optuna.storages.InMemoryStorage()
    first = with_overrides(Config(), {"evaluate.nll_samples": 20})
    study = open_study(first, storage, "s")
    assert study.user_attrs[OBJECTIVE_ATTR] == "val_nll_k20_grayscale_nats"
    study.add_trial(optuna.trial.create_trial(value=90.0, params={}, distributions={}))

    assert open_study(first, storage, "s").user_attrs[OBJECTIVE_ATTR] == "val_nll_k20_grayscale_nats"
    with pytest.raises(ConfigError) as refused:
        open_study(with_overrides(first, {"data.binarize": "dynamic"}), storage, "s")
    assert str(refused.value) == (
        "sweep.study_name 's': its trials were scored by val_nll_k20_grayscale_nats, but these params score by "
        "val_nll_k20_binarized_nats; choose another sweep.study_name, or the evaluate.nll_samples and data.binarize it used"
    )

    # A study from before the objective was recorded: its values are negative ELBOs.
    old = optuna.create_study(storage=storage, study_name="old")
    old.add_trial(optuna.trial.create_trial(value=110.0, params={}, distributions={}))
    with pytest.raises(ConfigError, match="scored by the validation negative ELBO"):
        open_study(first, storage, "old")
