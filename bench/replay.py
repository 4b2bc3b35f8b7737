"""What a pruner would have done to a study already run without one: which trials it stops, and after which epoch.

An unpruned trial's value after each epoch does not depend on the pruner, so recorded learning curves can
be replayed through any pruner in an in-memory study, one trial after another as a single worker runs them,
in seconds instead of a training run per candidate. The replay is exact as long as the pruned study would
have sampled the same parameters, which holds for the trials the sampler draws before it learns from
results (TPE's random start-up trials; every trial of the random sampler).

The measurement behind the default pruner (bench/pruning.py), so it lives with the benchmarks rather than in the
installed package; Optuna is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vaelab.config.schema import Config
from vaelab.sweep.storage import make_pruner


@dataclass(frozen=True)
class Replay:
    epochs: list[int]  # per trial: epochs run before it finished or was pruned
    best_value: float | None  # the lowest final value of the trials left to finish; None if all were pruned

    @property
    def epochs_spent(self) -> int:
        return sum(self.epochs)


def replay_pruner(config: Config, curves: Sequence[Sequence[float]], study_name: str = "replay") -> Replay:
    """Run ``curves`` (per trial, its value after epoch 1, 2, ...) through ``config``'s pruner, in order.

    ``study_name`` matters to Hyperband only, which assigns trials to brackets by a hash of it.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=study_name, direction="minimize", pruner=make_pruner(config))
    epochs: list[int] = []
    finished: list[float] = []
    for curve in curves:
        trial = study.ask()
        ran = _epochs_until_pruned(trial, curve)
        if ran < len(curve):
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
            finished.append(curve[-1])
        epochs.append(ran)
    return Replay(epochs, min(finished) if finished else None)


def _epochs_until_pruned(trial, curve: Sequence[float]) -> int:
    """Report like the objective does (steps are 1-based epochs) until the pruner says stop."""
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            return epoch
    return len(curve)
