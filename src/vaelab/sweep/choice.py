"""Which trial of a study is its winner: the one ``best_params.yaml``, the summary and promotion name.

With one objective, the COMPLETE trial with the lowest value (every vaelab objective is minimised). With several
(``sweep.objectives``), no trial is lowest in all, so the winner comes from the Pareto front (the COMPLETE trials
no other trial beats in every objective) by the rule the params name: the front's trial lowest in
``sweep.choose_by`` (default: the first objective), among those within every upper bound of
``sweep.choose_limits``. Ties go to the lower values of the other objectives in their order, then to the lower
trial number. When no front trial is within the limits, that is a ConfigError, not a quiet fallback to a trial
outside them: the limits are the user's, and promotion must not train what they ruled out. The limits apply to
one objective too, where the front is the lowest trial.

Pruned trials never count: they stopped before the last epoch, so their values are not comparable.

Part of vaelab.sweep; Optuna's trial states are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaelab.config.schema import Config
from vaelab.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def chosen_trial(study: optuna.Study, config: Config) -> FrozenTrial | None:
    """The study's winner by ``config``'s rule, or None when no trial is COMPLETE.

    Raises ConfigError when the study's number of objectives is not ``sweep.objectives``' or when no trial of
    the front is within ``sweep.choose_limits``.
    """
    sweep = config.sweep
    if len(study.directions) != len(sweep.objectives):
        raise ConfigError(
            f"study {study.study_name!r} has {len(study.directions)} objectives, but sweep.objectives names "
            f"{len(sweep.objectives)} ({', '.join(sweep.objectives)}); use the sweep.objectives it was run with"
        )
    front = pareto_front(study)
    if not front:
        return None
    order = [sweep.objectives.index(sweep.choose_by or sweep.objectives[0])]
    order += [index for index in range(len(sweep.objectives)) if index not in order]
    within = [trial for trial in front if not _limits_broken(trial, config)]
    if not within:
        lowest = {name: min(trial.values[sweep.objectives.index(name)] for trial in front) for name in sweep.choose_limits}
        shown = ", ".join(f"{name}={value:.6g}" for name, value in lowest.items())
        raise ConfigError(
            f"no trial on the Pareto front of study {study.study_name!r} ({len(front)} trials) keeps sweep.choose_limits "
            f"{_limits_text(config)}; the front's lowest: {shown}. Raise the limits or run more trials"
        )
    return min(within, key=lambda trial: (*(trial.values[index] for index in order), trial.number))


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials that no other COMPLETE trial beats in every objective, by trial number.

    With one objective, the trials with the lowest value. Optuna's ``best_trials`` computes it, for the study's
    directions (all "minimize" in vaelab).
    """
    return sorted(study.best_trials, key=lambda trial: trial.number)


def rule_text(config: Config) -> str:
    """The choice rule in words, e.g. ``lowest val_nll on the Pareto front, with params <= 200000``."""
    sweep = config.sweep
    by = sweep.choose_by or sweep.objectives[0]
    text = f"lowest {by} on the Pareto front" if len(sweep.objectives) > 1 else f"lowest {by}"
    return f"{text}, with {_limits_text(config)}" if sweep.choose_limits else text


def _limits_broken(trial: FrozenTrial, config: Config) -> bool:
    objectives = config.sweep.objectives
    return any(trial.values[objectives.index(name)] > bound for name, bound in config.sweep.choose_limits.items())


def _limits_text(config: Config) -> str:
    return ", ".join(f"{name} <= {bound:g}" for name, bound in config.sweep.choose_limits.items())
