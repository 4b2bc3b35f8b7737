"""What a sweep leaves behind in ``sweeps/<study>/`` and on its MLflow parent run.

- ``trials.csv``: Optuna's trials table (number, state, value, params, user attrs such as ``fail_reason``).
- ``summary.json``: the objective (:func:`objective_metric` and what it measures), trials per state (and how
  many FAIL ones are surplus, never run), best value, best parameters, the winner's ``dvc exp run`` command.
- ``best_params.yaml``: the best trial's ``train.*`` values, for ``dvc exp run -S key=value``.
- ``plots/*.png``: optimisation history, parameter importances, parallel coordinates, slices.

With several ``sweep.objectives`` the winner is chosen from the Pareto front (:mod:`vaelab.sweep.choice`), and
``summary.json`` lists the objectives, the front, the chosen trial's values and the rule instead of one objective;
``pareto_front.csv`` and ``plots/pareto_front.png`` show the front (:mod:`vaelab.sweep.pareto`), and the plots
that need one value per trial show the objective the rule chooses by.

Part of vaelab.sweep (Optuna is imported here too, for its plots); files are written atomically.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import yaml

from vaelab.config.schema import Config
from vaelab.errors import ConfigError
from vaelab.files import atomic_path, ensure_dir, write_json
from vaelab.metric_names import data_label, nll_metric
from vaelab.sweep import pareto
from vaelab.sweep.choice import chosen_trial, rule_text

log = logging.getLogger(__name__)

FAIL_REASON_ATTR = "fail_reason"  # trial user attr: why a trial failed
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attr: the MLflow run every worker's trials nest under
SURPLUS_ATTR = "surplus"  # trial user attr: created after the budget was taken, so failed without running
# Optuna's plot name -> complete trials it needs (importances compare trials, so one is not enough).
PLOTS = {"optimization_history": 1, "param_importances": 2, "parallel_coordinate": 1, "slice": 1}
PLOT_DPI = 100
# sweep.objectives name -> its metric besides val_nll's (objective_metric); see vaelab.sweep.scores.
OTHER_METRICS = {"params": "trainable_params", "sample_fid": "val_sample_fid_classifier"}
OTHER_DESCRIPTIONS = {
    "params": "trainable_params (the VAE's trainable parameter count; lower is better)",
    "sample_fid": (
        "val_sample_fid_classifier (Frechet distance of the classifier stage's features of evaluate.quality_samples "
        "prior samples and of the validation images, at the last epoch; lower is better)"
    ),
}


def objective_metric(config: Config) -> str:
    """The trials' value, e.g. ``val_nll_k100_grayscale_nats``: the evaluate stage's NLL, on the validation split."""
    return nll_metric("val", config.evaluate.nll_samples, config.data.binarize)


def objective_description(config: Config) -> str:
    """:func:`objective_metric` with what it measures, for ``summary.json``."""
    evaluate = config.evaluate
    images = "all images" if evaluate.nll_images is None else f"a seeded subset of up to {evaluate.nll_images} images"
    return (
        f"{objective_metric(config)} (validation importance-sampled NLL, K={evaluate.nll_samples}, "
        f"{data_label(config.data.binarize)} data, {images}; nats, lower is better)"
    )


def objective_metrics(config: Config) -> tuple[str, ...]:
    """The metric of each of ``sweep.objectives``, in order: the names of a trial's values."""
    return tuple(objective_metric(config) if name == "val_nll" else OTHER_METRICS[name] for name in config.sweep.objectives)


def objective_descriptions(config: Config) -> list[str]:
    """What each of ``sweep.objectives`` measures, in order, for ``summary.json``."""
    return [objective_description(config) if name == "val_nll" else OTHER_DESCRIPTIONS[name] for name in config.sweep.objectives]


def chosen_metric(config: Config) -> str:
    """The metric of the objective the choice rule goes by (``sweep.choose_by``, else the first objective)."""
    sweep = config.sweep
    return objective_metrics(config)[sweep.objectives.index(sweep.choose_by or sweep.objectives[0])]


def write_report(study, folder: Path, config: Config, *, n_trials: int, storage: str, duration_seconds: float) -> dict:
    """Write the files above for ``study`` (whatever state its trials are in) and return the summary.

    When the params' choice rule names no trial (:func:`~vaelab.sweep.choice.chosen_trial`), every file but
    ``best_params.yaml`` is still written and ``summary["choice_problem"]`` holds the one-line reason.
    """
    from optuna.trial import TrialState

    folder = ensure_dir(folder)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(1 for trial in trials if trial.state == state) for state in TrialState}
    # FAIL trials that never trained: created for the last slot in the same instant as the one that took it.
    surplus = [trial for trial in trials if trial.state == TrialState.FAIL and trial.user_attrs.get(SURPLUS_ATTR)]
    try:
        best, problem = chosen_trial(study, config), None
    except ConfigError as err:
        best, problem = None, str(err)
    best_params = {f"train.{key}": value for key, value in best.params.items()} if best else {}
    metrics = objective_metrics(config)
    several = len(metrics) > 1

    with atomic_path(folder / "trials.csv") as tmp:
        study.trials_dataframe().to_csv(tmp, index=False)
    _write_best_params(study, best, best_params, folder / "best_params.yaml", config)
    by = chosen_metric(config)
    written, skipped = write_plots(study, folder / "plots", target=(metrics.index(by), by) if several else None)

    summary: dict = {"study": study.study_name, "storage": storage}
    if several:
        summary["objectives"] = objective_descriptions(config)
    else:
        summary["objective"] = objective_descriptions(config)[0]
    summary.update({"n_trials_target": n_trials, "trials": counts, "surplus_trials": len(surplus)})
    if several:
        front = pareto.front_rows(study, metrics, best)
        pareto.write_front_table(front, folder / "pareto_front.csv")
        if not front:
            skipped["pareto_front"] = "needs at least 1 complete trial, the study has 0"
        elif len(metrics) > pareto.MAX_PLOTTED:
            skipped["pareto_front"] = f"drawn for {pareto.MAX_PLOTTED} objectives at most, the study has {len(metrics)}"
        else:
            written.append(pareto.write_front_plot(study, metrics, best, folder / "plots" / "pareto_front.png", dpi=PLOT_DPI))
        summary.update({"choice": rule_text(config), "pareto_front": front})
        summary["best_values"] = dict(zip(metrics, best.values, strict=True)) if best else None
    summary.update(
        {
            "best_trial": best.number if best else None,
            # With several objectives, the value of the one the rule chooses by.
            "best_value": best.values[metrics.index(by)] if best else None,
            "best_params": best_params,
            "command": winner_command(best_params) if best else None,
            "duration_seconds": round(duration_seconds, 1),
            "plots": [path.name for path in written],
            "plots_skipped": skipped,
        }
    )
    if problem:
        summary["choice_problem"] = problem
    write_json(folder / "summary.json", summary)
    return summary


def _write_best_params(study, best, best_params: dict, path: Path, config: Config) -> None:
    """``best_params.yaml`` with a header naming the trial, its values and, when it applies, the choice rule."""
    if best is None:
        path.unlink(missing_ok=True)  # a leftover would name a winner this study lacks
        return
    values = ", ".join(f"{metric}={value:.6g}" for metric, value in zip(objective_metrics(config), best.values, strict=True))
    header = f"# best of study {study.study_name!r}: trial {best.number}, {values}\n"
    if len(config.sweep.objectives) > 1 or config.sweep.choose_limits:
        header += f"# chosen by the rule of sweep.choose_by and sweep.choose_limits: {rule_text(config)}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(best_params, sort_keys=False), encoding="utf-8")


def winner_command(best_params: dict) -> str:
    """``dvc exp run -S train.z_dim=8 -S ...``: the winner trained by the normal pipeline with params.yaml's epochs."""
    return "dvc exp run " + " ".join(f"-S {key}={_value_text(value)}" for key, value in best_params.items())


def log_finished_trial(study, trial, *, metrics: tuple[str, ...]) -> None:
    """One log line per finished trial: number, state, values (or why not) and parameters.

    An Optuna callback once ``metrics`` (:func:`objective_metrics`) are bound, e.g. with functools.partial.
    """
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        digits = ".4f" if len(metrics) == 1 else ".6g"  # .6g shows a parameter count as the integer it is
        outcome = ", ".join(f"{metric}={value:{digits}}" for metric, value in zip(metrics, trial.values, strict=True))
    elif trial.state == TrialState.PRUNED:
        outcome = f"after epoch {trial.last_step}"
    else:
        outcome = trial.user_attrs.get(FAIL_REASON_ATTR, "see the error above")
    params = " ".join(f"{key}={value:.4g}" for key, value in trial.params.items())
    log.info("trial %d %s: %s%s", trial.number, trial.state.name, outcome, f" | {params}" if params else "")


def write_plots(study, folder: Path, target: tuple[int, str] | None = None) -> tuple[list[Path], dict[str, str]]:
    """Optuna's matplotlib plots as PNGs; returns the files written and, per plot left out, why.

    For a study of several objectives, ``target`` is the position and metric name of the one these plots show;
    the importances plot shows every objective.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    folder = ensure_dir(folder)
    for old in folder.glob("*.png"):  # a plot skipped this time must not survive from an earlier run
        old.unlink()
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for name, needed in PLOTS.items():
        if n_complete < needed:
            skipped[name] = f"needs at least {needed} complete trials, the study has {n_complete}"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # these plots are "experimental"
            # It warns that importances are for low values of each objective: every vaelab objective is minimised.
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes", UserWarning)
            # Matplotlib's when every complete trial has the same value of a parameter: the plot widens that axis itself.
            warnings.filterwarnings("ignore", "Attempting to set identical low and high", UserWarning)
            try:
                axes = getattr(optuna_plots, f"plot_{name}")(study, **_target_arguments(name, target))
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                skipped[name] = f"{type(err).__name__}: {err}"
                continue
        figure = np.ravel(axes)[0].figure  # plot_slice gives one Axes per parameter
        path = folder / f"{name}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=PLOT_DPI, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    for name, reason in skipped.items():
        log.info("plot %s left out: %s", name, reason)
    return written, skipped


def log_report(summary: dict, folder: Path, config: Config) -> None:
    """Best values, trial counts and the report files on the active (parent) MLflow run.

    The best parameters go in as metrics ``best.<key>``: MLflow params cannot change, and a resumed
    study's best trial may. With several objectives, each of the chosen trial's values is a ``best_<metric>``
    and the rule is the tag ``best.choice``.
    """
    from vaelab.tracking import runs

    counts = summary["trials"]
    metrics = {f"trials_{state.lower()}": count for state, count in counts.items()}
    if summary["best_value"] is not None:
        best_values = summary.get("best_values") or {objective_metrics(config)[0]: summary["best_value"]}
        metrics.update({f"best_{metric}": value for metric, value in best_values.items()})
        metrics.update({f"best.{key.removeprefix('train.')}": value for key, value in summary["best_params"].items()})
        runs.set_tags({"best.trial_number": summary["best_trial"]})
    if "pareto_front" in summary:
        metrics["pareto_front_trials"] = len(summary["pareto_front"])
        runs.set_tags({"best.choice": summary["choice"]})
    runs.log_metrics(metrics, step=counts["COMPLETE"] + counts["PRUNED"])
    for name in ("trials.csv", "summary.json", "best_params.yaml", "pareto_front.csv"):
        if (folder / name).exists():
            runs.log_artifact(folder / name)
    for name in summary["plots"]:
        runs.log_artifact(folder / "plots" / name, "plots")


def _target_arguments(plot: str, target: tuple[int, str] | None) -> dict:
    """Optuna's arguments that pick the objective ``target`` for ``plot`` (none for one objective, or importances)."""
    if target is None or plot == "param_importances":  # importances draw one bar per objective and parameter
        return {}
    index, name = target
    return {"target": lambda trial: trial.values[index], "target_name": name}


def _value_text(value) -> str:
    # repr keeps every digit of a float, so the command trains exactly the winning values.
    return repr(value) if isinstance(value, float) else str(value)
