"""Multi-objective sweeps (sweep.objectives): the config's checks, the choice from the Pareto front, the front's
table and plot, and tiny studies end to end with a real Optuna journal file and a real SQLite MLflow store."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.trial import TrialState
from sweep_helpers import mlflow_runs, study_in

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, DataError
from vaelab.sweep import coordinator, report
from vaelab.sweep.choice import chosen_trial, pareto_front, rule_text
from vaelab.sweep.storage import OBJECTIVE_ATTR, open_study

NLL = "val_nll_k20_grayscale_nats"  # TINY_SWEEP's evaluate.nll_samples on grey data
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TWO = {"sweep.objectives": ["val_nll", "params"], "evaluate.nll_samples": 20}


# --- the params' checks (fast) ---


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"sweep.objectives": ["val_nll", "fid"]},
            "override: sweep.objectives: unknown objective 'fid'; allowed: val_nll, params, sample_fid; received ['val_nll', 'fid']",
        ),
        (
            {"sweep.objectives": ["params", "val_nll", "params"]},
            "override: sweep.objectives: objective 'params' is named twice; name each once; received ['params', 'val_nll', 'params']",
        ),
        (
            {"sweep.objectives": []},
            "override: sweep.objectives: give at least one objective; allowed: val_nll, params, sample_fid; received []",
        ),
        (
            {"sweep.objectives": ["val_nll", "params"], "sweep.choose_by": "sample_fid"},
            "override: sweep: choose_by names 'sample_fid', which is not one of sweep.objectives (val_nll, params)",
        ),
        (
            {"sweep.choose_limits": {"params": 1000}},
            "override: sweep: choose_limits names 'params', which is not one of sweep.objectives (val_nll)",
        ),
    ],
)
def test_objectives_and_the_choice_rule_name_known_objectives(project_root: Path, overrides, message):
    from vaelab.config.load import load_config

    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", overrides)
    assert str(caught.value) == message


def test_several_objectives_leave_the_pruner_keys_unused(project_root: Path):
    from vaelab.config.load import load_config

    # With val_nll alone, a first prunable epoch after the last is refused; with two objectives nothing is pruned.
    bad_pruning = {"sweep.epochs": 1, "sweep.pruner_min_epochs": 3}
    with pytest.raises(ConfigError, match="pruner_min_epochs must be at most epochs"):
        load_config(project_root / "params.yaml", bad_pruning)
    config = load_config(project_root / "params.yaml", {**bad_pruning, **TWO})
    assert config.sweep.objectives == ("val_nll", "params")


def test_an_unknown_objective_stops_vaelab_sweep_with_one_line(tmp_path: Path, project_root: Path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vaelab"), "sweep", "--params", str(project_root / "params.yaml")]
        + ["--set", "sweep.objectives=[val_nll, fid]"],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "vaelab: error: override: sweep.objectives: unknown objective 'fid'; allowed: val_nll, params, sample_fid; "
        "received ['val_nll', 'fid']\n"
    )
    assert not (tmp_path / "sweeps").exists()


def test_sample_fid_needs_the_classifier_stage_model(tmp_path: Path):
    from vaelab.evaluation.classifier import CLASSIFIER_FILE, NO_LABELS_FILE
    from vaelab.sweep.scores import require_classifier

    folder = tmp_path / "classifier"
    config = with_overrides(Config(), {"sweep.objectives": ["sample_fid", "params"], "paths.classifier": str(folder)})
    require_classifier(with_overrides(config, {"sweep.objectives": ["params"]}))  # not an objective: no need
    with pytest.raises(DataError) as missing:
        require_classifier(config)
    assert str(missing.value) == (
        f"sweep.objectives has sample_fid, which scores samples with the classifier stage's model, but "
        f"{folder / CLASSIFIER_FILE} does not exist; run `dvc repro classifier` first"
    )
    folder.mkdir()
    (folder / NO_LABELS_FILE).write_text("no labels\n")
    with pytest.raises(DataError) as unlabelled:
        require_classifier(config)
    assert str(unlabelled.value) == "sweep.objectives has sample_fid, but the dataset has no class labels to train its classifier on"
    (folder / NO_LABELS_FILE).unlink()
    (folder / CLASSIFIER_FILE).write_bytes(b"")  # only its presence is checked here; load_judge reads it
    require_classifier(config)


# --- the choice from the front, on a study of known values (fast) ---

# (val_nll, params) of trials 0-6. Trial 4 is beaten by 1 in both; 6 by 3 (same params, higher NLL); 5 ties 2
# in both, and a tie beats neither, so the front is 0, 1, 2, 3 and 5.
VALUES = [(90.0, 9000.0), (95.0, 6000.0), (100.0, 4000.0), (120.0, 3000.0), (96.0, 7000.0), (100.0, 4000.0), (130.0, 3000.0)]


def two_objective_study(config: Config) -> optuna.Study:
    study = open_study(config, optuna.storages.InMemoryStorage(), "known")
    z_dim: dict[str, BaseDistribution] = {"z_dim": IntDistribution(2, 64)}
    for number, values in enumerate(VALUES):
        study.add_trial(optuna.trial.create_trial(values=list(values), params={"z_dim": number + 2}, distributions=z_dim))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={}, distributions={}))  # never chosen
    return study


@pytest.mark.parametrize(
    ("rule", "winner"),
    [
        ({}, 0),  # the first objective: the lowest NLL, 90
        ({"sweep.choose_by": "params"}, 3),  # 3000 params: 3 and 6, but 6 is not on the front
        ({"sweep.choose_limits": {"params": 6000}}, 1),  # of 1, 2, 3, 5, the lowest NLL is 1's 95
        ({"sweep.choose_limits": {"params": 4000}}, 2),  # 2 and 5 tie at NLL 100 and 4000 params: the lower number
        ({"sweep.choose_by": "params", "sweep.choose_limits": {"val_nll": 100}}, 2),  # of 0, 1, 2, 5: 4000 params
        ({"sweep.choose_limits": {"val_nll": 95, "params": 6000}}, 1),  # only 1 keeps both
    ],
)
def test_the_winner_is_the_front_trial_lowest_in_choose_by_within_the_limits(rule, winner):
    config = with_overrides(Config(), {**TWO, **rule})
    study = two_objective_study(config)
    assert [trial.number for trial in pareto_front(study)] == [0, 1, 2, 3, 5]
    chosen = chosen_trial(study, config)
    assert chosen is not None and chosen.number == winner


def test_no_front_trial_within_the_limits_is_a_one_line_error():
    config = with_overrides(Config(), {**TWO, "sweep.choose_limits": {"params": 2500, "val_nll": 200}})
    with pytest.raises(ConfigError) as caught:
        chosen_trial(two_objective_study(config), config)
    assert str(caught.value) == (
        "no trial on the Pareto front of study 'known' (5 trials) keeps sweep.choose_limits params <= 2500, val_nll <= 200; "
        "the front's lowest: params=3000, val_nll=90. Raise the limits or run more trials"
    )


def test_rule_text_names_the_objective_and_the_limits():
    assert rule_text(with_overrides(Config(), TWO)) == "lowest val_nll on the Pareto front"
    limited = {**TWO, "sweep.choose_by": "params", "sweep.choose_limits": {"val_nll": 100.5}}
    assert rule_text(with_overrides(Config(), limited)) == "lowest params on the Pareto front, with val_nll <= 100.5"
    assert rule_text(Config()) == "lowest val_nll"


def test_one_objective_still_chooses_the_lowest_value_and_refuses_a_study_of_two():
    single = optuna.create_study()
    for value in (3.0, 1.0, 2.0, 1.0):
        single.add_trial(optuna.trial.create_trial(value=value))
    chosen = chosen_trial(single, Config())
    assert chosen is not None and chosen.number == 1
    assert chosen_trial(optuna.create_study(), Config()) is None
    with pytest.raises(ConfigError) as caught:
        chosen_trial(two_objective_study(with_overrides(Config(), TWO)), Config())
    assert str(caught.value) == (
        "study 'known' has 2 objectives, but sweep.objectives names 1 (val_nll); use the sweep.objectives it was run with"
    )


def test_the_report_of_a_known_study_lists_its_front_and_winner(tmp_path: Path):
    config = with_overrides(Config(), {**TWO, "sweep.choose_limits": {"params": 6000}})
    study = two_objective_study(config)
    summary = report.write_report(study, tmp_path, config, n_trials=7, storage="memory", duration_seconds=1.0)

    with (tmp_path / "pareto_front.csv").open() as table:
        rows = list(csv.reader(table))
    assert rows == [
        ["trial", NLL, "trainable_params", "train.z_dim", "chosen"],
        ["0", "90.0", "9000.0", "2", "False"],
        ["1", "95.0", "6000.0", "3", "True"],
        ["2", "100.0", "4000.0", "4", "False"],
        ["3", "120.0", "3000.0", "5", "False"],
        ["5", "100.0", "4000.0", "7", "False"],
    ]
    assert (summary["best_trial"], summary["best_value"], summary["best_params"]) == (1, 95.0, {"train.z_dim": 3})
    assert summary["best_values"] == {NLL: 95.0, "trainable_params": 6000.0}
    assert summary["choice"] == "lowest val_nll on the Pareto front, with params <= 6000"
    assert [row["trial"] for row in summary["pareto_front"]] == [0, 1, 2, 3, 5]
    assert summary["objectives"][1] == "trainable_params (the VAE's trainable parameter count; lower is better)"
    assert summary["objectives"][0].startswith(f"{NLL} (validation importance-sampled NLL, K=20")
    assert "objective" not in summary and "choice_problem" not in summary
    assert (tmp_path / "best_params.yaml").read_text() == (
        f"# best of study 'known': trial 1, {NLL}=95, trainable_params=6000\n"
        "# chosen by the rule of sweep.choose_by and sweep.choose_limits: lowest val_nll on the Pareto front, with params <= 6000\n"
        "train.z_dim: 3\n"
    )
    # History, parallel coordinates and slices show the NLL (the objective chosen by); importances show both.
    optuna_plots = ["optimization_history.png", "param_importances.png", "parallel_coordinate.png", "slice.png"]
    assert summary["plots"] == [*optuna_plots, "pareto_front.png"]
    assert summary["plots_skipped"] == {}
    for name in summary["plots"]:
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_a_study_of_another_number_of_objectives_is_not_resumed():
    storage = optuna.storages.InMemoryStorage()
    two = with_overrides(Config(), TWO)
    study = open_study(two, storage, "s")
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert study.user_attrs[OBJECTIVE_ATTR] == f"{NLL}, trainable_params"
    assert study.metric_names == [NLL, "trainable_params"]
    assert isinstance(study.pruner, optuna.pruners.NopPruner)  # whatever sweep.pruner says
    with pytest.raises(ConfigError) as refused:
        open_study(with_overrides(Config(), {"evaluate.nll_samples": 20}), storage, "s")
    assert str(refused.value) == (
        f"sweep.study_name 's' has 2 objectives, but sweep.objectives names 1 ({NLL}); Optuna cannot change a "
        "study's objectives: choose another sweep.study_name, or the sweep.objectives it was run with"
    )
    with pytest.raises(ConfigError) as refused:
        open_study(with_overrides(two, {"sweep.objectives": ["params", "val_nll"]}), storage, "s")
    assert str(refused.value) == (
        f"sweep.study_name 's': its trials were scored by {NLL}, trainable_params, but these params score by "
        f"trainable_params, {NLL}; choose another sweep.study_name, or the sweep.objectives, evaluate.nll_samples "
        "and data.binarize it used"
    )


# --- whole sweeps (slow) ---


def dominated(values: tuple[float, ...], others: list[tuple[float, ...]]) -> bool:
    """Whether some other values are no higher in every objective and lower in one."""
    return any(all(o <= v for o, v in zip(other, values, strict=True)) and other != values for other in others)


@pytest.mark.slow
def test_a_two_objective_sweep_leaves_its_front_plot_and_parent_run(sweep_config, sweep_workdir, mlflow_uri, caplog):
    caplog.set_level("INFO", logger="vaelab")
    config = sweep_config(sweep__objectives=["val_nll", "params"], sweep__epochs=1, sweep__pruner="median")
    summary = coordinator.run_sweep(config, n_trials=3)

    study = study_in()
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 3
    # The tiny network: convolutions 3*3*1*4+4 and 3*3*4*8+8, transposed ones 3*3*8*8+8 and 3*3*8*1+1, the Dense
    # layer's 392 biases (7*7*8 features), then per latent dimension 2*(392+1) for mu and log_var and 392 for Dense.
    for trial in trials:
        assert trial.values[1] == 40 + 296 + 584 + 73 + 392 + (2 * 393 + 392) * trial.params["z_dim"]
        assert trial.intermediate_values == {}  # nothing reported: the study is not pruned
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("Optuna cannot prune a study of several objectives: every trial runs all sweep.epochs=1") == 1

    out = sweep_workdir / "sweeps" / "tiny"
    with (out / "pareto_front.csv").open() as table:
        rows = list(csv.DictReader(table))
    values = {trial.number: tuple(trial.values) for trial in trials}
    on_front = sorted(n for n, v in values.items() if not dominated(v, [o for m, o in values.items() if m != n]))
    assert [int(row["trial"]) for row in rows] == on_front
    for row in rows:
        number = int(row["trial"])
        assert (float(row[NLL]), float(row["trainable_params"])) == values[number]
        assert int(row["train.z_dim"]) == study.trials[number].params["z_dim"]
    winner = min(on_front, key=lambda n: values[n])  # lowest NLL (ties: fewer parameters)
    assert [row["chosen"] for row in rows] == [str(int(row["trial"]) == winner) for row in rows]
    assert (out / "plots" / "pareto_front.png").read_bytes().startswith(PNG_SIGNATURE)

    assert (summary["best_trial"], summary["best_value"]) == (winner, values[winner][0])
    assert summary["best_values"] == {NLL: values[winner][0], "trainable_params": values[winner][1]}
    assert summary["choice"] == "lowest val_nll on the Pareto front"
    assert [row["trial"] for row in summary["pareto_front"]] == on_front
    assert json.loads((out / "summary.json").read_text()) == summary
    assert yaml.safe_load((out / "best_params.yaml").read_text()) == {f"train.{k}": v for k, v in study.trials[winner].params.items()}
    assert coordinator.winner_line(summary, config) == (
        f"Chosen trial {winner} (lowest val_nll on the Pareto front; the front has {len(on_front)} trials): "
        f"{NLL}={values[winner][0]:.6g}, trainable_params={values[winner][1]:.0f}."
    )

    parents, children = mlflow_runs(mlflow_uri)
    parent = parents[0]
    client = MlflowClient(mlflow_uri)
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.csv", "summary.json", "best_params.yaml", "trials.csv", "plots"} <= artifacts
    assert "plots/pareto_front.png" in {item.path for item in client.list_artifacts(parent.info.run_id, "plots")}
    assert parent.data.metrics[f"best_{NLL}"] == pytest.approx(values[winner][0])
    assert parent.data.metrics["best_trainable_params"] == values[winner][1]
    assert parent.data.metrics["pareto_front_trials"] == len(on_front)
    assert parent.data.tags["best.choice"] == "lowest val_nll on the Pareto front"
    by_number = {int(child.data.params["optuna.trial_number"]): child for child in children}
    for number, (nll, size) in values.items():
        metrics = by_number[number].data.metrics
        assert (metrics[f"final_{NLL}"], metrics["final_trainable_params"]) == (pytest.approx(nll), size)
        assert [m.step for m in client.get_metric_history(by_number[number].info.run_id, NLL)] == [1]  # still logged

    # Limits that no front trial keeps: the report is rewritten without a winner, then the one-line error.
    limited = with_overrides(config, {"sweep.choose_limits": {"params": 10}})
    with pytest.raises(ConfigError, match=r"^no trial on the Pareto front of study 'tiny' .* keeps sweep.choose_limits params <= 10;"):
        coordinator.run_sweep(limited, n_trials=3)
    assert len(study_in().get_trials()) == 3  # no trial more
    assert not (out / "best_params.yaml").exists()
    written = json.loads((out / "summary.json").read_text())
    assert written["best_trial"] is None and written["choice_problem"].startswith("no trial on the Pareto front")
    with (out / "pareto_front.csv").open() as table:
        assert {row["chosen"] for row in csv.DictReader(table)} == {"False"}


@pytest.mark.slow
def test_sample_fid_is_the_evaluate_stage_fid_of_the_trial_model_on_the_validation_images(
    sweep_config, sweep_workdir, mlflow_uri, tmp_path, monkeypatch
):
    """The trial's value, recomputed on its model by the evaluate stage's function with the classifier from disk."""
    import keras

    from vaelab import training
    from vaelab.data.processed import load_splits, write_splits
    from vaelab.evaluation.classifier import CLASSIFIER_FILE, build_classifier
    from vaelab.evaluation.quality import sample_quality
    from vaelab.sweep.objective import Objective

    # sample_fid needs labelled data of two classes at least: the sweep's squares, labelled by their index's parity.
    # The test images are inverted, so that scoring against them instead of the validation images shows.
    source = load_splits(sweep_config().paths.processed)
    processed = tmp_path / "labelled"
    arrays = {}
    for split in ("train", "val", "test"):
        x = np.asarray(getattr(source, f"x_{split}"))
        arrays[f"x_{split}"] = 1.0 - x if split == "test" else x
        arrays[f"y_{split}"] = (np.arange(len(x)) % 2).astype(np.uint8)
    write_splits(processed, arrays, {"dataset": "mnist", "image_shape": [28, 28, 1], "class_names": ["even", "odd"]})
    config = sweep_config(
        sweep__objectives=["val_nll", "sample_fid"], sweep__epochs=1, evaluate__quality_samples=40, paths__processed=str(processed)
    )
    with pytest.raises(DataError) as missing:
        coordinator.run_sweep(config, n_trials=1)
    assert str(missing.value) == (
        "sweep.objectives has sample_fid, which scores samples with the classifier stage's model, but "
        "models/classifier/classifier.keras does not exist; run `dvc repro classifier` first"
    )
    assert not (sweep_workdir / "sweeps" / "optuna.journal").exists()  # refused before any study was made

    # An untrained classifier judges as well as a trained one here: its features are fixed functions of the images.
    keras.utils.set_random_seed(0)
    settings = with_overrides(config, {"classifier.filters": [4], "classifier.feature_units": 8}).classifier
    classifier_file = sweep_workdir / "models" / "classifier" / CLASSIFIER_FILE
    classifier_file.parent.mkdir(parents=True)
    build_classifier((28, 28, 1), 2, settings).save(classifier_file)

    models = []
    real_train = training.train

    def train_and_keep(*args, **kwargs):
        result = real_train(*args, **kwargs)
        models.append(result.model)
        return result

    monkeypatch.setattr(training, "train", train_and_keep)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(Objective(config, load_splits(processed)), n_trials=1)

    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    judge = keras.models.load_model(classifier_file)
    splits = load_splits(processed)
    expected = sample_quality(judge, models[0], splits.x_val, 40, config.base.seed, config.evaluate.batch_size)["sample_fid_classifier"]
    assert trial.values[1] == pytest.approx(expected, rel=1e-6)
    on_test = sample_quality(judge, models[0], splits.x_test, 40, config.base.seed, config.evaluate.batch_size)["sample_fid_classifier"]
    assert on_test != pytest.approx(expected, rel=0.1)  # scored against the test images, it would differ
    client = MlflowClient(mlflow_uri)
    assert client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics["final_val_sample_fid_classifier"] == pytest.approx(expected)


def test_the_single_target_plots_show_the_objective_chosen_by(tmp_path: Path):
    import warnings

    from optuna.visualization.matplotlib import plot_optimization_history

    config = with_overrides(Config(), {**TWO, "sweep.choose_by": "params"})
    study = two_objective_study(config)
    report.write_report(study, tmp_path / "report", config, n_trials=7, storage="memory", duration_seconds=1.0)

    # Optuna's own history of the second objective, drawn and saved as the report saves its plots.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot_optimization_history(study, target=lambda trial: trial.values[1], target_name="trainable_params")
    figure = axes.get_figure(root=True)
    assert figure is not None
    figure.savefig(tmp_path / "expected.png", dpi=report.PLOT_DPI, bbox_inches="tight")
    drawn = (tmp_path / "report" / "plots" / "optimization_history.png").read_bytes()
    assert drawn == (tmp_path / "expected.png").read_bytes()


def test_plots_of_trials_that_share_a_parameter_value_raise_no_warning(tmp_path: Path):
    """Matplotlib warns of a singular axis when every trial has the same z_dim; the plots widen it themselves."""
    study = optuna.create_study()
    for learning_rate in (1e-3, 2e-3, 4e-3):
        distributions = {"z_dim": IntDistribution(2, 8), "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
        trial = optuna.trial.create_trial(
            params={"z_dim": 4, "learning_rate": learning_rate}, distributions=distributions, value=learning_rate
        )
        study.add_trial(trial)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written, skipped = report.write_plots(study, tmp_path)
    assert sorted(path.name for path in written) == [f"{name}.png" for name in sorted(report.PLOTS) if name not in skipped]
    assert "parallel_coordinate" not in skipped and "slice" not in skipped
