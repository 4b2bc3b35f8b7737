"""Pruners: make_pruner builds what sweep.pruner_* say, and replays of hand-made learning curves stop exactly the
trials worked out by hand below (fast; no training)."""

from __future__ import annotations

import optuna
import pytest

from bench.replay import replay_pruner
from vaelab.config.load import load_config
from vaelab.errors import ConfigError
from vaelab.sweep.storage import make_pruner

# Values after epochs 1-4 (lower is better), one trial after another.
CURVES = [
    [10.0, 9.0, 8.0, 7.0],
    [12.0, 11.0, 10.0, 9.0],
    [30.0, 20.0, 19.0, 5.0],  # the best final value, but only if it ran to the end
    [11.0, 9.2, 7.0, 6.0],
    [10.0, 9.6, 9.5, 9.4],
]


@pytest.mark.parametrize(
    ("settings", "kind", "expected"),
    [
        (
            {"pruner": "median", "pruner_startup_trials": 3, "pruner_min_epochs": 2},
            optuna.pruners.MedianPruner,
            {"_percentile": 50.0, "_n_startup_trials": 3, "_n_warmup_steps": 2},
        ),
        (
            {"pruner": "percentile", "pruner_percentile": 25.0, "pruner_startup_trials": 1, "pruner_min_epochs": 3},
            optuna.pruners.PercentilePruner,
            {"_percentile": 25.0, "_n_startup_trials": 1, "_n_warmup_steps": 3},
        ),
        (
            {"pruner": "successive_halving", "pruner_reduction_factor": 4, "pruner_min_epochs": 2},
            optuna.pruners.SuccessiveHalvingPruner,
            {"_reduction_factor": 4, "_min_resource": 2},
        ),
        (
            {"pruner": "hyperband", "pruner_reduction_factor": 2, "pruner_min_epochs": 1},
            optuna.pruners.HyperbandPruner,
            {"_reduction_factor": 2, "_min_resource": 1, "_max_resource": 4},
        ),
        ({"pruner": "none"}, optuna.pruners.NopPruner, {}),
    ],
    ids=lambda value: value["pruner"] if isinstance(value, dict) and "pruner" in value else None,
)
def test_make_pruner_uses_the_configured_settings(sweep_config, settings, kind, expected):
    pruner = make_pruner(sweep_config(sweep__epochs=4, **{f"sweep__{key}": value for key, value in settings.items()}))
    assert type(pruner) is kind
    # Optuna keeps its settings in private attributes; reading them is the only way to see what was built.
    assert {name: getattr(pruner, name) for name in expected} == expected


def _replay(sweep_config, **settings):
    return replay_pruner(sweep_config(sweep__epochs=4, **{f"sweep__{key}": value for key, value in settings.items()}), CURVES)


def test_median_replay_prunes_the_trials_behind_the_median_of_finished_ones(sweep_config):
    replay = _replay(sweep_config, pruner="median", pruner_startup_trials=2, pruner_min_epochs=1)
    # Trials 0 and 1 start the study. Trial 2: 30 after epoch 1 > median(10, 12) = 11, pruned then.
    # Trial 3: 11 is not above 11; its best so far stays below median(9, 11) = 10, (8, 10) = 9 and (7, 9) = 8.
    # Trial 4: 10 <= median(10, 12, 11) = 11, then best 9.6 > median(9, 11, 9.2) = 9.2, pruned after epoch 2.
    assert replay.epochs == [4, 4, 1, 4, 2]
    assert replay.epochs_spent == 15
    assert replay.best_value == 6.0


def test_percentile_replay_waits_for_min_epochs_then_prunes_above_the_percentile(sweep_config):
    replay = _replay(sweep_config, pruner="percentile", pruner_percentile=25.0, pruner_startup_trials=2, pruner_min_epochs=2)
    # Nothing is pruned after epoch 1. After epoch 2 the 25th percentile of the finished trials' values is
    # 9 + 0.25 * (11 - 9) = 9.5: trial 2 (best 20) is pruned, trial 3 (9.2) goes on, staying below
    # 8.5 and 7.5 after epochs 3 and 4. Trial 4 meets 9, 9.2, 11 after epoch 2, percentile 9.1 < 9.6: pruned.
    assert replay.epochs == [4, 4, 2, 4, 2]
    assert replay.best_value == 6.0


def test_replay_of_an_unpruned_study_runs_every_epoch(sweep_config):
    replay = _replay(sweep_config, pruner="none")
    assert replay.epochs == [4] * len(CURVES)
    assert replay.best_value == 5.0


def test_min_epochs_beyond_the_epochs_is_fine_without_a_pruner(project_root):
    # Studies of one-epoch trials (the memory benchmark, tests) need not lower pruner_min_epochs.
    config = load_config(project_root / "params.yaml", {"sweep.pruner": "none", "sweep.epochs": 1, "sweep.pruner_min_epochs": 2})
    assert config.sweep.epochs == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"sweep.pruner": "wilcoxon"},
            "sweep.pruner: Input should be 'median', 'percentile', 'successive_halving', 'hyperband' or 'none'; received 'wilcoxon'",
        ),
        (
            {"sweep.pruner_min_epochs": 5, "sweep.pruner": "median"},
            "sweep: pruner_min_epochs must be at most epochs, or the median pruner could prune no trial; "
            "received pruner_min_epochs=5, epochs=4 (or set pruner: none)",
        ),
        ({"sweep.pruner_min_epochs": 0}, "sweep.pruner_min_epochs: Input should be greater than or equal to 1; received 0"),
        ({"sweep.pruner_startup_trials": -1}, "sweep.pruner_startup_trials: Input should be greater than or equal to 0; received -1"),
        ({"sweep.pruner_percentile": 100}, "sweep.pruner_percentile: Input should be less than 100; received 100"),
        ({"sweep.pruner_reduction_factor": 1}, "sweep.pruner_reduction_factor: Input should be greater than or equal to 2; received 1"),
        ({"sweep.pruner_reduction_factor": 2.5}, "sweep.pruner_reduction_factor: Input should be a valid integer; received 2.5"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_bad_pruner_settings_are_one_line_errors(project_root, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", overrides)
    assert str(caught.value) == f"override: {message}"


def test_intermediate_estimate_judge_flags_a_size_that_changes_what_the_pruner_stops():
    from bench.intermediate_nll import judge, mixed_curve, smallest_same

    assert mixed_curve({"2": [1.0, 2.0, 3.0, 4.0], "4": [5.0, 6.0, 7.0, 8.0]}, "2", "4") == [1.0, 2.0, 3.0, 8.0]
    # Per trial, the curve of the 2-image estimate and of the full (4-image) one. Trials 0 and 1 read alike on both.
    # Trial 2's full estimate after epoch 1, 10.5, is below median(10, 12) = 11, and it stays below the medians
    # after (9 < 10, 8 < 9, 6 < 8): it finishes. Its 2-image estimate, 13, is above 11: pruned after epoch 1.
    recorded = {
        "1": [
            {"curves": {"2": [10.0, 9.0, 8.0, 7.5], "4": [10.0, 9.0, 8.0, 7.0]}},
            {"curves": {"2": [12.0, 11.0, 10.0, 9.5], "4": [12.0, 11.0, 10.0, 9.0]}},
            {"curves": {"2": [13.0, 9.0, 8.0, 6.5], "4": [10.5, 9.0, 8.0, 6.0]}},
        ]
    }
    verdicts = judge(recorded)
    assert verdicts["median s2 e1"]["2"]["1"] == {"same": False, "epochs": [4, 4, 1], "full_epochs": [4, 4, 4]}
    assert verdicts["none"]["2"]["1"]["same"] is True
    assert smallest_same(verdicts, "median s2 e1") is None
    assert smallest_same(verdicts, "none") == 2
    # A size is accepted only when every larger one is too.
    by_size = {"500": {"42": {"same": True}}, "200": {"42": {"same": False}}, "100": {"42": {"same": True}}}
    assert smallest_same({"p": by_size}, "p") == 500
