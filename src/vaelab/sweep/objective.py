"""One sweep trial: sample ``sweep.space``, train like the train stage, score by the validation NLL.

Each trial trains ``sweep.epochs`` epochs on the first ``sweep.max_train`` training images and, after every
epoch (so a pruner can stop it early), reports the importance-sampled NLL of the validation split in nats, lower
is better, named by :func:`vaelab.sweep.report.objective_metric` (e.g. ``val_nll_k100_grayscale_nats``).
Before the last epoch only the pruner reads it, so there it is estimated on the first ``sweep.pruning_nll_images``
of the scored images (logged as ``<metric>_first<n>``): all trials are compared on the same images at the same
epoch, and bench/intermediate_nll.json shows the default pruner stopping the same trials of recorded studies as
with the full estimate. The last epoch's value, the one the study optimises, is the full estimate, unchanged.

Why that figure: it is the one the evaluate stage reports on the test split, by the same
:func:`vaelab.evaluation.likelihood.estimate_nll` with the same settings (``evaluate.nll_samples`` draws per image on
``evaluate.nll_images`` images chosen with ``base.seed``), so a sweep optimises what the winning run is judged
by. The negative ELBO it replaced is a looser bound whose gap to the NLL (the KL from q(z|x) to the true
posterior) differs from model to model, so it could rank trials differently. Like the ELBO, it ignores
``r_loss_factor``, which only weights the training loss. Each image's draws are seeded by its index, so
every epoch and every trial is scored with the same noise.

The training images stream from the processed shards batch by batch, so a worker's memory does not grow with
``sweep.max_train``. Of the validation split, only the ``evaluate.nll_images`` scored images are read each
epoch (all of them, a batch at a time, when that is null or covers the split).

With several ``sweep.objectives`` a trial returns one value per objective, each taken after its last epoch
(the NLL as above, the others by :mod:`vaelab.sweep.scores`), and logs each as ``final_<metric>`` on its MLflow
run. The NLL is still logged after every epoch, but not reported to Optuna, which cannot prune such a study
(nor one scored by ``params`` or ``sample_fid`` alone, known only at the end).

A trial that ends COMPLETE or PRUNED uploads two pictures of its model as it was after its last epoch to the
study's artifact store (:func:`upload_trial_pictures`), where optuna-dashboard shows them beside the trial's params.

Part of vaelab.sweep; Optuna, Keras and MLflow are imported inside the functions, so importing this module
stays cheap.
"""

from __future__ import annotations

import gc
import logging
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.data.shards import ShardedImages
from vaelab.errors import ConfigError, DataError, TrainingError
from vaelab.sweep import scores
from vaelab.sweep.report import FAIL_REASON_ATTR, objective_metric, objective_metrics
from vaelab.sweep.storage import WORKER_ATTR, prunes, worker_id

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from vaelab.data.processed import Splits
    from vaelab.model import VAE

log = logging.getLogger(__name__)

STATE_TAG = "optuna.state"
SAMPLE_PICTURE = "samples.png"
LOSS_PICTURE = "loss_curves.png"
PICTURE_SAMPLES = 36  # a 6 x 6 grid: enough to judge a trial by, a fraction of a second to decode and draw


class Objective:
    """One trial: sample the space, train like the train stage on the capped data, return the validation NLL.

    Holds the config and the splits (the first ``sweep.max_train`` training images and the whole
    validation split, left on disk when they are shards) for all trials of a worker. With an
    ``artifact_store``, each COMPLETE or PRUNED trial uploads its pictures there.
    """

    def __init__(
        self,
        config: Config,
        splits: Splits,
        *,
        parent_run_id: str | None = None,
        study_name: str | None = None,
        artifact_store: FileSystemArtifactStore | None = None,
    ):
        if len(splits.x_val) == 0:
            raise DataError("the validation split is empty, so trials cannot be scored; raise data.val_fraction")
        self.config = config
        self.splits = training_subset(splits, config.sweep.max_train)
        self.parent_run_id = parent_run_id
        self.study_name = study_name or config.sweep.study_name
        self.artifact_store = artifact_store
        self.metric = objective_metric(config)  # sweep.space holds train.* keys only, so every trial's is the same
        self.metrics = objective_metrics(config)
        self._check_space()
        self.judge = scores.load_judge(config, splits) if "sample_fid" in config.sweep.objectives else None

    def suggest(self, trial: optuna.Trial) -> dict[str, int | float]:
        """One value per ``sweep.space`` key; integer train settings (z_dim, batch_size) stay integers."""
        values: dict[str, int | float] = {}
        for key, bounds in self.config.sweep.space.items():
            if _is_integer_setting(self.config, key):
                values[key] = trial.suggest_int(key, *_integer_bounds(key, bounds), log=bounds.log)
            else:
                values[key] = trial.suggest_float(key, bounds.low, bounds.high, log=bounds.log)
        return values

    def trial_config(self, values: dict[str, int | float]) -> Config:
        overrides = {f"train.{key}": value for key, value in values.items()}
        return with_overrides(self.config, {**overrides, "train.epochs": self.config.sweep.epochs})

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        import keras
        import optuna

        from vaelab.tracking import runs

        trial.set_user_attr(WORKER_ATTR, worker_id())
        config = self.trial_config(self.suggest(trial))
        tags = {"optuna.study": self.study_name, STATE_TAG: "RUNNING"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        pruned = None
        try:
            with runs.start_run(config, name=trial_run_name(trial.number, config), nested=True, tags=tags) as run:
                runs.log_params({"optuna.trial_number": trial.number})
                # After the param: a trial that names its run has a run that names the trial, even if killed now.
                trial.set_user_attr("mlflow_run_id", run.info.run_id)
                try:
                    values = self._train(trial, config)
                except optuna.TrialPruned as err:
                    pruned = err  # raised once the run has ended, so MLflow records it FINISHED, not FAILED
                    runs.set_tags({STATE_TAG: "PRUNED"})
                except TrainingError as err:
                    trial.set_user_attr(FAIL_REASON_ATTR, str(err))
                    runs.set_tags({STATE_TAG: "FAIL", "optuna.fail_reason": str(err)})
                    raise
                else:
                    runs.log_metrics({f"final_{metric}": value for metric, value in zip(self.metrics, values, strict=True)})
                    runs.set_tags({STATE_TAG: "COMPLETE"})
        finally:
            # Each trial builds a new model; without this, graphs and weights of every earlier one stay alive.
            keras.backend.clear_session()
            gc.collect()
        if pruned is not None:
            raise pruned
        return values[0] if len(values) == 1 else values

    def _train(self, trial: optuna.Trial, config: Config) -> tuple[float, ...]:
        import optuna

        from vaelab import precision
        from vaelab.tracking import runs
        from vaelab.tracking.epochs import MlflowEpochLogger
        from vaelab.training import train

        reporter = _validation_reporter(trial, self.splits.x_val, config)
        result = train(config, self.splits, callbacks=[reporter, MlflowEpochLogger()], verbose=0)
        runs.set_tags({precision.RUN_TAG: result.precision})
        if reporter.failure:
            raise TrainingError(reporter.failure)
        if self.artifact_store is not None:
            upload_trial_pictures(trial, self.artifact_store, result.model, result.history, config.base.seed)
        if reporter.pruned_after is not None:
            raise optuna.TrialPruned(f"after epoch {reporter.pruned_after}: {reporter.last_name}={reporter.last_value:.4g}")
        return tuple(self._final_value(name, result.model, reporter.last_value, config) for name in config.sweep.objectives)

    def _final_value(self, name: str, model: VAE, nll: float, config: Config) -> float:
        """The trial's value for objective ``name`` after its last epoch; ``nll`` is the reporter's last."""
        if name == "val_nll":
            return nll
        if name == "params":
            return float(scores.trainable_parameters(model))
        assert self.judge is not None  # __init__ loads it when sample_fid is an objective, the one left
        return scores.sample_fid(self.judge, model, self.splits.x_val, config)

    def _check_space(self) -> None:
        """Both ends of every range must be valid settings, so a bad range fails now rather than mid-study."""
        for key, bounds in self.config.sweep.space.items():
            ends = _integer_bounds(key, bounds) if _is_integer_setting(self.config, key) else (bounds.low, bounds.high)
            for end in ends:
                try:
                    with_overrides(self.config, {f"train.{key}": end})
                except ConfigError as err:
                    message = f"sweep.space.{key}: the range end {end:g} is not a valid train.{key} ({err})"
                    raise ConfigError(message) from None


def upload_trial_pictures(
    trial: optuna.Trial, artifact_store: FileSystemArtifactStore, model: VAE, history: list[dict[str, Any]], seed: int
) -> None:
    """Upload the trial's sample grid and loss curves, drawn from ``model`` and ``history`` after its last epoch.

    The samples are decoded from the same ``seed``'s latent points in every trial, so trials with the same
    z_dim are compared on the same z. A picture that cannot be written or stored costs a warning, not the trial.
    """
    import optuna

    from vaelab.evaluation import plots
    from vaelab.evaluation.metrics import sample_prior

    try:
        with tempfile.TemporaryDirectory(prefix="vaelab-trial-") as folder:
            samples, losses = Path(folder) / SAMPLE_PICTURE, Path(folder) / LOSS_PICTURE
            plots.plot_samples(sample_prior(model, PICTURE_SAMPLES, seed), samples)
            plots.plot_loss_curves(history, losses)
            for path in (samples, losses):
                optuna.artifacts.upload_artifact(artifact_store=artifact_store, file_path=str(path), study_or_trial=trial)
    except OSError as err:
        log.warning("trial %d: its pictures were not stored (%s); the dashboard will show none", trial.number, err)


def training_subset(splits: Splits, max_train: int | None) -> Splits:
    """``splits`` with only the first ``max_train`` training images (all if None); no image is read.

    Shards stay shards (:meth:`ShardedImages.head`) and arrays become views, so the trials stream their
    batches from disk like the train stage does instead of holding the subset as float32.
    """
    n = len(splits.x_train) if max_train is None else min(max_train, len(splits.x_train))
    x_train = splits.x_train.head(n) if isinstance(splits.x_train, ShardedImages) else splits.x_train[:n]
    return replace(splits, x_train=x_train, y_train=splits.y_train[:n])


def trial_run_name(number: int, config: Config) -> str:
    """The child run's name, e.g. ``trial-3-z8-r1000-lr0.0005``."""
    train = config.train
    return f"trial-{number}-z{train.z_dim}-r{train.r_loss_factor:.4g}-lr{train.learning_rate:.2g}"


def _validation_reporter(trial: optuna.Trial, x_val: ShardedImages | np.ndarray, config: Config):
    """A Keras callback that reports the validation NLL to ``trial`` after each epoch and stops a pruned trial.

    Before the last epoch it reports the estimate on the first ``sweep.pruning_nll_images`` scored images; at
    the last, the full one, which the trial returns."""
    import keras  # here, not at the top: `vaelab sweep --help` should not load TensorFlow

    from vaelab.evaluation.likelihood import estimate_nll

    metric = objective_metric(config)
    evaluate = config.evaluate
    scored = len(x_val) if evaluate.nll_images is None else min(evaluate.nll_images, len(x_val))
    pruning_images = config.sweep.pruning_nll_images
    if pruning_images is not None and pruning_images >= scored:
        pruning_images = None  # the full estimate: no cheaper one to report under another name

    class ValidationReporter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.last_value = math.nan
            self.last_name = metric  # the name of the estimate last_value is: the full one, or a cheaper one
            self.pruned_after: int | None = None
            self.failure: str | None = None

        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training:  # training's NaN guard stopped it, and train() raises the error
                return
            # The evaluate stage's call on the test split (vaelab.stages), here on the validation split; before the
            # last epoch on its first pruning_nll_images images only, since then only the pruner reads it.
            first = None if epoch + 1 >= config.sweep.epochs else pruning_images
            value = estimate_nll(self.model, x_val, evaluate.nll_samples, evaluate.nll_images, config.base.seed, evaluate.batch_size, first)
            name = metric if first is None else _pruning_metric(metric, first)
            if not math.isfinite(value):
                self.failure = f"{name} became {value} after epoch {epoch + 1}"
                self.model.stop_training = True
                return
            self.last_value, self.last_name = value, name
            if logs is not None:
                logs[name] = value  # the same dict goes on to MlflowEpochLogger
            if not prunes(config):  # Optuna refuses reports from studies of several objectives
                return
            trial.report(value, epoch + 1)  # steps are 1-based epochs, like the MLflow metric steps
            if trial.should_prune():
                self.pruned_after = epoch + 1
                self.model.stop_training = True

    return ValidationReporter()


def _pruning_metric(metric: str, images: int) -> str:
    """The name of the cheaper estimate on ``images`` images a trial reports before its last epoch, e.g.
    ``val_nll_k100_grayscale_nats_first100``: not the objective's own name, whose figure covers all scored images."""
    return f"{metric}_first{images}"


def _is_integer_setting(config: Config, key: str) -> bool:
    value = getattr(config.train, key)
    return isinstance(value, int) and not isinstance(value, bool)


def _integer_bounds(key: str, bounds) -> tuple[int, int]:
    low, high = math.ceil(bounds.low), math.floor(bounds.high)
    if low > high:
        raise ConfigError(f"sweep.space.{key}: no integer in [{bounds.low:g}, {bounds.high:g}]; train.{key} is an integer")
    return low, high
