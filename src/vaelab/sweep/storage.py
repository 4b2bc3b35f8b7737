"""Where a sweep's Optuna study lives: the storage spec, opening storages and studies, the folder of its trials'
pictures, abandoned trials.

A storage spec with ``://`` is an SQLAlchemy URL, anything else a journal file path. Why the default is
a journal file, and how several machines share a PostgreSQL study, is told in :mod:`vaelab.sweep.coordinator`.

Part of vaelab.sweep; Optuna is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaelab.config.schema import Config
from vaelab.errors import ConfigError, VaelabError, first_line
from vaelab.files import ensure_dir
from vaelab.sweep.report import objective_metrics
from vaelab.tracking.redact import redact_url

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# Study user attr: the metric its trials are scored by, e.g. val_nll_k100_grayscale_nats; with several objectives,
# their metrics joined by ", ".
OBJECTIVE_ATTR = "objective"

SWEEPS_DIR = Path("sweeps")
DEFAULT_STORAGE = "sweeps/optuna.journal"
STORAGE_ENV = "VAELAB_OPTUNA_STORAGE"
ARTIFACTS_ENV = "VAELAB_OPTUNA_ARTIFACTS"
WORKER_ATTR = "worker"  # trial user attr "host:pid", to recognise trials of dead local workers
HEARTBEAT_INTERVAL = 10  # seconds
GRACE_PERIOD = 30  # seconds without a heartbeat before a running trial counts as abandoned


def resolve_storage(override: str | None, config: Config) -> str:
    """``--storage``, else ``$VAELAB_OPTUNA_STORAGE``, else ``sweep.storage``, else ``sweeps/optuna.journal``."""
    return override or os.environ.get(STORAGE_ENV) or config.sweep.storage or DEFAULT_STORAGE


def resolve_artifact_folder(out_dir: Path = SWEEPS_DIR) -> Path:
    """``$VAELAB_OPTUNA_ARTIFACTS``, else ``<out_dir>/artifacts``: where trials' pictures are kept for the dashboard.

    One folder for every study of the storage, not one per study, because optuna-dashboard serves all the
    storage's studies with a single artifact store. The storage records only each picture's id and name, so
    workers on several machines need this folder shared (or the variable pointing at a shared one) for the
    dashboard to show every trial's pictures.
    """
    return Path(os.environ.get(ARTIFACTS_ENV) or Path(out_dir) / "artifacts")


def open_artifact_store(folder: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """The file-system artifact store in ``folder``, created if missing."""
    from optuna.artifacts import FileSystemArtifactStore

    return FileSystemArtifactStore(str(ensure_dir(folder)))


def open_storage(spec: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD):
    """A JournalStorage for a file path; an RDBStorage for a URL, with heartbeats and one retry unless SQLite."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from sqlalchemy.exc import SQLAlchemyError

    from vaelab.tracking.redact import redact_url

    if not is_url(spec):
        ensure_dir(Path(spec).parent)
        return JournalStorage(JournalFileBackend(spec))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            if is_sqlite(spec):
                return RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
            return RDBStorage(
                _with_installed_driver(spec),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except (ImportError, ValueError, SQLAlchemyError) as err:
        reason = redact_url(first_line(err, 1000))
        raise VaelabError(
            f"cannot open the Optuna storage {redact_url(spec)}: {reason}; check --storage, ${STORAGE_ENV} or sweep.storage"
        ) from None


def make_sampler(config: Config, seed: int) -> optuna.samplers.BaseSampler:
    """``sweep.sampler``, seeded; both handle several objectives too.

    TPE with several objectives is Optuna's multi-objective TPE, which models the front from the first trials
    on. NSGA-II, Optuna's other multi-objective sampler, evolves generations of 50 trials by default, so a
    16-trial study would never get past its random first generation.
    """
    import optuna

    if config.sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def prunes(config: Config) -> bool:
    """Whether the study can stop trials early: only the validation NLL alone is known after every epoch.

    Optuna cannot prune a study of several objectives (``Trial.report`` refuses them), and ``params`` or
    ``sample_fid`` alone are scored only after the last epoch.
    """
    return config.sweep.objectives == ("val_nll",)


def make_pruner(config: Config) -> optuna.pruners.BasePruner:
    """``sweep.pruner`` with its ``sweep.pruner_*`` settings; steps are 1-based epochs (see the objective)."""
    from optuna import pruners

    sweep = config.sweep
    # Optuna skips steps below n_warmup_steps, so with 1-based epochs it equals the first epoch that may prune.
    if sweep.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=sweep.pruner_startup_trials, n_warmup_steps=sweep.pruner_min_epochs)
    if sweep.pruner == "percentile":
        return pruners.PercentilePruner(
            sweep.pruner_percentile, n_startup_trials=sweep.pruner_startup_trials, n_warmup_steps=sweep.pruner_min_epochs
        )
    if sweep.pruner == "successive_halving":
        return pruners.SuccessiveHalvingPruner(min_resource=sweep.pruner_min_epochs, reduction_factor=sweep.pruner_reduction_factor)
    if sweep.pruner == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=sweep.pruner_min_epochs, max_resource=sweep.epochs, reduction_factor=sweep.pruner_reduction_factor
        )
    return pruners.NopPruner()


def open_study(config: Config, storage, study_name: str, worker_index: int = 0) -> optuna.Study:
    """Create the study, or load the one of that name, with this config's sampler and pruner.

    One "minimize" direction per ``sweep.objectives`` entry; without pruning (:func:`prunes`) the pruner is
    Optuna's NopPruner and trials run every epoch.
    """
    import optuna

    # log_finished_trial reports each trial in one line; Optuna would add its own, with tracebacks for failures.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    metrics = objective_metrics(config)
    pruner = make_pruner(config) if prunes(config) else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=["minimize"] * len(metrics), pruner=pruner, load_if_exists=True
    )
    _check_objective(study, metrics)
    # Seeded from base.seed and also from the trials so far and the worker: with base.seed alone, a resumed
    # study or a second worker would propose the very parameters already tried.
    entropy = [config.base.seed, len(study.get_trials(deepcopy=False)), worker_index]
    study.sampler = make_sampler(config, int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return study


def _check_objective(study: optuna.Study, metrics: tuple[str, ...]) -> None:
    """Record what a new study's trials are scored by; refuse to add trials scored otherwise to an old one.

    Values of different objectives (another K, binarized against grayscale data, the negative ELBO that
    studies before this attribute were scored by) are not alike, and the sampler and pruner would compare them.
    Optuna keeps a study's directions from its creation, so a study of another number of objectives is refused
    even without trials.
    """
    import optuna

    if len(study.directions) != len(metrics):
        raise ConfigError(
            f"sweep.study_name {study.study_name!r} has {len(study.directions)} objectives, but sweep.objectives names "
            f"{len(metrics)} ({', '.join(metrics)}); Optuna cannot change a study's objectives: choose another "
            "sweep.study_name, or the sweep.objectives it was run with"
        )
    objective = ", ".join(metrics)
    recorded = study.user_attrs.get(OBJECTIVE_ATTR)
    if recorded == objective:
        return
    if recorded is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(OBJECTIVE_ATTR, objective)
        if len(metrics) > 1:  # names the values in trials.csv and the plots' axes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(metrics))
        return
    earlier = recorded or "the validation negative ELBO (a study from before vaelab named its objective)"
    # Both scored by the validation NLL alone: only its settings can differ.
    nll_only = all(name.startswith("val_nll") and ", " not in name for name in (objective, recorded or "val_nll"))
    settings = "evaluate.nll_samples and data.binarize" if nll_only else "sweep.objectives, evaluate.nll_samples and data.binarize"
    raise ConfigError(
        f"sweep.study_name {study.study_name!r}: its trials were scored by {earlier}, but these params score "
        f"by {objective}; choose another sweep.study_name, or the {settings} it used"
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_abandoned_trials(study: optuna.Study, heartbeat: bool) -> None:
    """Mark FAIL the RUNNING trials whose worker is gone: by heartbeat for a database, else by local pid."""
    import optuna
    from optuna.trial import TrialState

    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # FAIL after the grace period, then the retry callback
        return
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner == host and pid.isdigit() and not _process_alive(int(pid)):
            log.warning("trial %d was left RUNNING by worker process %s, now gone; marking it FAIL", trial.number, pid)
            # Another worker may mark it between our read and our write, which the journal refuses.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def is_url(spec: str) -> bool:
    return "://" in spec


def is_sqlite(spec: str) -> bool:
    return spec.startswith("sqlite")


def uses_heartbeats(spec: str) -> bool:
    """Whether workers on ``spec`` send heartbeats (a database other than SQLite) rather than being found by pid."""
    return is_url(spec) and not is_sqlite(spec)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; vaelab installs psycopg2, so name it unless psycopg is there."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


NO_STUDY_HINT = "run `make sweep` first"


def open_study_storage(spec: str, study_name: str) -> tuple[optuna.storages.BaseStorage, int]:
    """The storage at ``spec`` and the id of its study ``study_name``; a one-line error when either is missing."""
    # Opening a journal path creates the file, which would hide that no sweep ever ran here.
    if not is_url(spec) and not Path(spec).is_file():
        raise VaelabError(f"no study yet: {spec} does not exist; {NO_STUDY_HINT}")
    storage = open_storage(spec)
    try:
        return storage, storage.get_study_id_from_name(study_name)
    except KeyError:
        names = sorted(study.study_name for study in storage.get_all_studies())
        known = f"it has {', '.join(repr(name) for name in names)}" if names else "it has none"
        raise VaelabError(f"no study {study_name!r} yet in {redact_url(spec)} ({known}); {NO_STUDY_HINT} or pass --study") from None
