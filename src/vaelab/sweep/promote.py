"""Promotion: a study's winner trained, evaluated and registered by the pipeline itself, as a DVC experiment.

``vaelab promote [STUDY]`` (or ``vaelab sweep --promote`` once its trials are done) takes the study's winner
(:func:`vaelab.sweep.choice.chosen_trial`) and runs, in the project folder::

    dvc exp run --temp -n <study>-trial<N> -S train.z_dim=23 -S train.learning_rate=0.00038685872769625586 ...

A trial trains ``sweep.epochs`` epochs on ``sweep.max_train`` images; the experiment trains with the pipeline's
own ``train.epochs``, data and evaluation, under the settings the study ran with (a preset or ``--set`` of the
sweep: the study records them when it starts, :func:`record_settings`), so its model reaches MLflow, ``make exps`` and the registry like any
run (the alias ``best`` moves only if its test NLL is lower). ``--temp`` runs it in a copy under .dvc/tmp/exps:
the workspace (params.yaml, models/) stays as it was, and ``dvc exp apply <name>`` brings the result in. Values
are passed with every digit the study sampled; only the lines printed for people round them.

Promoting twice trains once: a DVC experiment of that name that exists already is recorded, not run again,
which also completes a promotion cut off after training. Its MLflow run is the one its run-info file names
(``paths.run_info``). The record goes on the study (user attr ``promoted``), on the study's MLflow parent run
(tags and metrics ``promoted.*``, artifact ``promoted.json``) and into ``sweeps/<study>/promoted.json``.

Part of vaelab.sweep; what it reads from and writes to MLflow is :mod:`vaelab.tracking.promotions`, imported when\nused.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config.load import load_config, with_overrides
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, TrainingError
from vaelab.files import write_json
from vaelab.presets import dvc_set_flags
from vaelab.sweep.choice import chosen_trial
from vaelab.sweep.report import PARENT_RUN_ATTR
from vaelab.sweep.storage import SWEEPS_DIR, open_study_storage

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

PROMOTED_ATTR = "promoted"  # study user attr: the record of the last promotion
SETTINGS_ATTR = "settings"  # study user attr: the params its trials ran under (record_settings)
CHOICE_KEYS = ("sweep.objectives", "sweep.choose_by", "sweep.choose_limits")  # the rule that picks the winner
RECORD_FILE = "promoted.json"


def experiment_name(study_name: str, trial_number: int) -> str:
    """The DVC experiment's name, e.g. ``vae-mnist-trial5``: the study's, with the trial that won."""
    return f"{study_name}-trial{trial_number}"


def promote(config: Config, study: optuna.Study, *, out_dir: Path = SWEEPS_DIR, project: Path = Path(".")) -> dict[str, Any]:
    """Train, evaluate and register the winner of ``study`` through the pipeline in ``project``; return the record.

    ``config``: the settings of a study that recorded none (see :func:`experiment_overrides`).
    """
    trial = winner(study, config)
    if trial is None:
        counts = ", ".join(f"{state}: {n}" for state, n in _state_counts(study).items()) or "no trials"
        raise ConfigError(
            f"study {study.study_name!r} has no COMPLETE trial to promote ({counts}); run `vaelab sweep --study {study.study_name}` first"
        )
    from vaelab.tracking.promotions import evaluated_run, registration_of

    _check_project(project)
    name = experiment_name(study.study_name, trial.number)
    overrides = experiment_overrides(study, trial, config, project)
    config = with_overrides(load_config(project / "params.yaml"), overrides)  # what the experiment runs with
    run_id = _experiment_run_id(name, config, project)
    if run_id is None:
        log.info("promoting trial %d of study %r (%s) as DVC experiment %s", trial.number, study.study_name, _rounded(trial), name)
        _run_experiment(name, overrides, project)
        run_id = _experiment_run_id(name, config, project)
    else:
        log.info("trial %d of study %r is already promoted as DVC experiment %s; nothing to train", trial.number, study.study_name, name)
    run = None if run_id is None else evaluated_run(config, run_id)
    if run is None:
        raise TrainingError(
            f"DVC experiment {name} names MLflow run {run_id}, which is not an evaluated run of experiment "
            f"{config.base.experiment!r} in this store; set MLFLOW_TRACKING_URI to the store it used, "
            f"or drop the experiment with `dvc exp remove {name}`"
        )
    record = {
        "study": study.study_name,
        "trial_number": trial.number,
        "trial_values": list(trial.values),
        "params": _trial_overrides(trial),
        "overrides": overrides,
        "experiment": name,
        "mlflow_experiment": config.base.experiment,
        **run,
        **(registration_of(run["run_id"]) or {"registered_model": None, "model_version": None, "best_version": None}),
    }
    record_file = Path(out_dir) / study.study_name / RECORD_FILE
    if study.user_attrs.get(PROMOTED_ATTR) == record and record_file.is_file():
        return record  # recorded before, everywhere
    study.set_user_attr(PROMOTED_ATTR, record)
    record_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(record_file, record)
    _log_on_parent_run(study, record, record_file)
    return record


def promote_study(config: Config, storage_spec: str, study_name: str, *, out_dir: Path = SWEEPS_DIR) -> dict[str, Any]:
    """:func:`promote` for the study ``study_name`` in the storage ``storage_spec``; a one-line error if it is not there."""
    import optuna

    storage, _ = open_study_storage(storage_spec, study_name)
    return promote(config, optuna.load_study(study_name=study_name, storage=storage), out_dir=out_dir)


def describe(record: dict[str, Any]) -> str:
    """The lines printed after a promotion: what ran, its test figures, the registry, where to look."""
    figures = ", ".join(f"{key}={value:.2f}" for key, value in record["test_metrics"].items())
    lines = [
        f"Promoted trial {record['trial_number']} of study {record['study']!r} as DVC experiment {record['experiment']} "
        f"(MLflow run {record['run_id']}, {record['run_name']}).",
        f"  test: {figures or 'no headline metrics logged'}",
    ]
    if record.get("registered_model"):
        best = record.get("best_version")
        where = "this version" if best == record["model_version"] else f"version {best}"
        lines.append(f"  registered {record['registered_model']} version {record['model_version']}; alias best: {where}")
    lines.append(f"  compare it: make exps, make ui; bring it into the workspace: dvc exp apply {record['experiment']}")
    return "\n".join(lines)


def study_settings(config: Config) -> dict[str, Any]:
    """The params a study's trials run under, as dotted keys, and of its own ``sweep.*`` keys those that choose
    its winner, so that promotion picks the trial its ``best_params.yaml`` names."""
    flat = config.flat()
    return {key: value for key, value in flat.items() if not key.startswith("sweep.") or key in CHOICE_KEYS}


def record_settings(study: optuna.Study, config: Config) -> None:
    """Keep :func:`study_settings` on a new study, so that its winner is promoted under them whatever flags
    ``vaelab promote`` gets (a resumed study keeps the settings it started with)."""
    if SETTINGS_ATTR not in study.user_attrs:
        study.set_user_attr(SETTINGS_ATTR, study_settings(config))


def winner(study: optuna.Study, config: Config) -> FrozenTrial | None:
    """:func:`~vaelab.sweep.choice.chosen_trial` by the rule the study recorded (else ``config``'s)."""
    recorded = study.user_attrs.get(SETTINGS_ATTR, {})
    return chosen_trial(study, with_overrides(config, {key: recorded[key] for key in CHOICE_KEYS if key in recorded}))


def experiment_overrides(study: optuna.Study, trial: FrozenTrial, config: Config, project: Path) -> dict[str, Any]:
    """The ``-S`` overrides of the experiment: where the study's settings differ from the project's params.yaml
    (a preset or ``--set`` the sweep ran with), then the trial's params. A study that recorded no settings is
    taken to have run under ``config``."""
    settings = study.user_attrs.get(SETTINGS_ATTR) or study_settings(config)
    base = load_config(project / "params.yaml").flat()
    differing = {key: value for key, value in settings.items() if key in base and base[key] != value and not key.startswith("sweep.")}
    return {**differing, **_trial_overrides(trial)}


def _trial_overrides(trial: FrozenTrial) -> dict[str, Any]:
    return {f"train.{key}": value for key, value in trial.params.items()}


def _rounded(trial: FrozenTrial) -> str:
    return " ".join(f"{key}={value:.4g}" for key, value in trial.params.items())


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _check_project(project: Path) -> None:
    if not (project / "dvc.yaml").is_file():
        raise ConfigError(f"promotion runs the DVC pipeline, but {project.resolve()} has no dvc.yaml; run it in the project folder")


def _experiment_run_id(name: str, config: Config, project: Path) -> str | None:
    """The MLflow run that DVC experiment ``name`` trained, from its run-info file; None if no such experiment.

    Read from the experiment, not searched by the run's ``dvc.exp_name`` tag: when another experiment already
    trained the same params, DVC restores the outputs from its run cache and names that run instead.
    """
    import dvc.api
    from dvc.scm import RevError

    try:
        text = dvc.api.read(str(config.paths.run_info), repo=str(project), rev=name)
    except RevError:
        return None
    return str(json.loads(text)["run_id"])


def _run_experiment(name: str, overrides: dict[str, Any], project: Path) -> None:
    """``dvc exp run --temp -n name -S ...``; its output goes to the terminal, so the user watches it train."""
    command = ["dvc", "exp", "run", "--temp", "-n", name, *dvc_set_flags(overrides)]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, cwd=project, check=False)
    except FileNotFoundError:
        raise ConfigError("cannot run `dvc`: it is not on PATH; activate the environment (source .venv/bin/activate)") from None
    if done.returncode != 0:
        raise TrainingError(f"`dvc exp run -n {name}` failed with exit code {done.returncode} (its output is above); nothing was recorded")


def _log_on_parent_run(study: optuna.Study, record: dict[str, Any], record_file: Path) -> None:
    """Tags, metrics and the record file on the study's MLflow parent run; a warning if it has none."""
    from vaelab.tracking.promotions import record_on_run

    tags = {
        "promoted.experiment": record["experiment"],
        "promoted.run_id": record["run_id"],
        "promoted.trial_number": str(record["trial_number"]),
    }
    metrics = {f"promoted.{key}": value for key, value in record["test_metrics"].items()}
    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_id is None or not record_on_run(parent_id, tags, metrics, record["trial_number"], record_file):
        log.warning("the study has no MLflow parent run in this store to take the promotion record; it is in %s", record_file)
