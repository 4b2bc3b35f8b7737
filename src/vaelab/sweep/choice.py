"""Which trial of a study is its winner: the one ``best_params.yaml``, the summary and promotion name.

With one objective, the COMPLETE trial with the lowest value (every vaelab objective is minimised). Pruned
trials never count: they stopped before the last epoch, so their values are not comparable.

Part of vaelab.sweep; Optuna's trial states are imported inside the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def chosen_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's winner, or None when no trial is COMPLETE."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # A COMPLETE single-objective trial always has a value.
    return min(complete, key=lambda trial: float(trial.values[0])) if complete else None
