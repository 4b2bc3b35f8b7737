"""Training the VAE: seeded input pipeline, step-decay schedule, NaN stop and resumable checkpoints.

A checkpoint folder holds ``model-epoch-NNNN.keras`` (weights, optimizer and random-generator state)
and ``state.json`` naming it. Both are written atomically, the model first, so a crash at any moment
leaves either the previous epoch's pair or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from vaelab import precision
from vaelab.config.schema import Config, TrainSection
from vaelab.distribute import is_chief, spans_workers, training_strategy, worker_label
from vaelab.errors import DataError, TrainingError, first_line
from vaelab.files import atomic_path, read_json, write_json
from vaelab.model import VAE, build_vae

if TYPE_CHECKING:
    import numpy as np

    from vaelab.data.processed import Splits
    from vaelab.data.shards import ShardedImages

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
HISTORY_KEYS = (
    "loss",
    "reconstruction_loss",
    "kl_loss",
    "val_loss",
    "val_reconstruction_loss",
    "val_kl_loss",
    "learning_rate",
)
# Recorded too where the model reports them: the unweighted IWAE bound of a train.loss iwae model.
OPTIONAL_HISTORY_KEYS = ("iwae_nats", "val_iwae_nats")
# Train keys that came after checkpoints were first written: left out of the fingerprint at their defaults,
# so a checkpoint made before they existed still resumes (its training used exactly those defaults).
_LATER_TRAIN_KEYS = ("loss", "iwae_samples", "prior", "vamp_components")

# Keras runs up to this many training steps inside one compiled call instead of returning to Python after
# each batch. On 2 CPU cores, fitting the bare model on arrays, that gave about 15% more images/s at batch
# 32 and about 5% at 128, and 16 steps gave no more than 4. Callbacks then see one batch end per execution.
MAX_STEPS_PER_EXECUTION = 16


@dataclass
class TrainResult:
    model: VAE
    history: list[dict[str, Any]]  # one row per epoch: "epoch" (1-based) and HISTORY_KEYS
    initial_epoch: int  # epochs restored from a checkpoint rather than trained in this call
    precision: str  # the Keras dtype policy train.precision resolved to (vaelab.precision)


def train(
    config: Config,
    splits: Splits,
    *,
    checkpoint_dir: Path | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_meta: dict | None = None,
    verbose: str | int = "auto",
    steps_per_execution: int | None = None,
) -> TrainResult:
    """Train on ``splits.x_train`` (validating on ``splits.x_val``), resuming from ``checkpoint_dir`` if it matches.

    The images stream from ``splits`` a few batches at a time (see :func:`vaelab.data.shards.image_batches`),
    so memory does not grow with the dataset. ``steps_per_execution`` (default: see
    :func:`default_steps_per_execution`) must divide the epoch's steps; several devices run one step per call.
    """
    settings = config.train
    height, width, channels = (int(s) for s in splits.image_shape)
    image_shape = (height, width, channels)
    policy = precision.resolve(settings.precision)
    fingerprint = _fingerprint(config, image_shape, policy)
    keras.utils.set_random_seed(config.base.seed)

    state = None
    if checkpoint_dir is not None:
        state, reason = _matching_state(Path(checkpoint_dir), fingerprint)
        if reason and is_chief():  # the other workers of a cluster read the chief's checkpoint, never write it
            log.warning("ignoring and replacing the checkpoint in %s: %s", checkpoint_dir, reason)
            clear_checkpoint(checkpoint_dir)
    # Variables made under the strategy's scope are mirrored on every device; fit() then splits each
    # global batch of train.batch_size between them. With one device this is the default strategy.
    steps_per_epoch = math.ceil(len(splits.x_train) / settings.batch_size)
    strategy = training_strategy()
    steps_per_execution = _checked_steps_per_execution(steps_per_execution, steps_per_epoch, strategy)
    if spans_workers(strategy):
        # Before any variable: creating one is itself a collective step, which would wait on a worker that differs.
        _check_workers_start_together(strategy, int(state["epoch"]) if state else 0, checkpoint_dir)
    with strategy.scope():
        if state:
            assert checkpoint_dir is not None  # a state is only read from a checkpoint folder
            model = _load_checkpoint_model(Path(checkpoint_dir) / state["model_file"])
            history, initial_epoch = list(state["history"]), int(state["epoch"])
            log.info("resuming training from the checkpoint after epoch %d in %s", initial_epoch, checkpoint_dir)
        else:
            model = build_vae(image_shape, settings, config.base.seed, policy)
            model.compile(optimizer=_optimizer(settings.learning_rate, policy))
            history, initial_epoch = [], 0
        # Set after compile() so a checkpoint loaded with its own compile settings gets it too.
        model.steps_per_execution = steps_per_execution
        model.kl_warmup_steps = settings.kl_warmup_epochs * steps_per_epoch
        model.logs_as_vectors = spans_workers(strategy)
    guard = _NonFiniteGuard()
    recorder = _EpochRecorder(history, guard)
    if checkpoint_dir is not None and is_chief():
        recorder.checkpoint = (Path(checkpoint_dir), fingerprint, dict(checkpoint_meta or {}))
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: settings.learning_rate * settings.lr_decay**epoch)

    with _without_remapper(), _lost_workers_as_errors(strategy):
        model.fit(
            _training_batches(
                splits.x_train,
                settings.batch_size,
                config.base.seed,
                skip=initial_epoch * steps_per_epoch,
                binarize=config.data.binarize == "dynamic",
            ),
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # the dataset shuffles itself, reproducibly
            epochs=settings.epochs,
            initial_epoch=initial_epoch,
            validation_data=_validation_batches(splits.x_val, settings.batch_size),
            # Order matters at epoch end: the scheduler adds learning_rate to the logs, the guard vetoes a
            # non-finite epoch, the recorder checkpoints it, and only then do the caller's callbacks run
            # (so one that interrupts still finds the epoch saved).
            callbacks=[schedule, guard, recorder, *callbacks],
            verbose=_verbosity(verbose),
        )
    if guard.failure:
        what, where = guard.failure
        raise TrainingError(
            f"loss became {what} at {where}; try a lower train.learning_rate (now {settings.learning_rate:g}) "
            f"or train.r_loss_factor (now {settings.r_loss_factor:g})"
        )
    return TrainResult(model=model, history=history, initial_epoch=initial_epoch, precision=policy)


def _optimizer(learning_rate: float, policy: str) -> keras.optimizers.Optimizer:
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    # float16 gradients underflow without loss scaling (VAE.train_step scales the loss; this unscales the gradients).
    return keras.optimizers.LossScaleOptimizer(adam) if policy == precision.MIXED_FLOAT16 else adam


@contextlib.contextmanager
def _without_remapper():
    """Grappler's remapper off for the functions fit() compiles (Grappler runs at their first call), restored after.

    Each encoder convolution feeds a LeakyReLU whose gradient also reads the convolution's output. The
    oneDNN remapper of TensorFlow 2.21 fuses Conv2D+BiasAdd in its first round, then, in the second, fuses
    that with the LeakyReLU without noticing the gradient's use; Grappler rejects the rewrite and prints
    "remapper failed: INVALID_ARGUMENT ... LeakyReluGrad" as an ERROR at every training start. Without the
    remapper the losses came out bit-identical and epochs no slower (2 CPU cores, real model size), so
    skipping it loses nothing and leaves no false error in the log.
    """
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("remapping")  # None: TensorFlow's default
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": before})


@contextlib.contextmanager
def _lost_workers_as_errors(strategy):
    """A cluster whose all-reduce loses a worker ends in one line (TrainingError) instead of a graph traceback."""
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.DeadlineExceededError)
    try:
        yield
    except lost as err:
        if not spans_workers(strategy):
            raise
        raise TrainingError(
            f"{worker_label()}: lost contact with another worker of the cluster ({type(err).__name__}); the last "
            "completed epoch is checkpointed: start every worker again to resume from it"
        ) from None


def default_steps_per_execution(steps_per_epoch: int) -> int:
    """The largest divisor of ``steps_per_epoch`` that is at most MAX_STEPS_PER_EXECUTION.

    Keras always runs whole executions, so a count that does not divide the epoch would train past the
    epoch's end on the endless input stream and shift every later epoch's batches (and a resume).
    """
    return max(d for d in range(1, min(MAX_STEPS_PER_EXECUTION, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _check_workers_start_together(strategy, initial_epoch: int, checkpoint_dir: Path | None) -> None:
    """Refuse to train when a cluster's workers would resume from different epochs.

    Each worker loads the checkpoint itself; one that cannot see the chief's (another machine without the
    shared folder) would start afresh, and the all-reduced steps would then mix two different models.
    """
    import tensorflow as tf

    def start() -> tf.Tensor:
        return tf.constant([initial_epoch], tf.int64)

    @tf.function  # run eagerly, a collective op makes TensorFlow warn of its overhead
    def every_workers_start() -> tf.Tensor:
        return strategy.gather(strategy.run(start), axis=0)

    starts = every_workers_start().numpy().tolist()
    if len(set(starts)) > 1:
        raise TrainingError(
            f"the workers would resume from different epochs ({', '.join(map(str, starts))}, by worker): every worker "
            f"must read the chief's checkpoint in {checkpoint_dir}; across machines put paths.checkpoints on a folder all of them mount"
        )


def _checked_steps_per_execution(requested: int | None, steps_per_epoch: int, strategy) -> int:
    # Keras 3.15's multi-step loop fails under MirroredStrategy ("You must feed a value for placeholder
    # tensor while/cond/Placeholder"), so several devices keep one step per call.
    if strategy.num_replicas_in_sync > 1:
        if requested not in (None, 1):
            raise ValueError(f"steps_per_execution={requested} fails on several devices in Keras 3.15; use 1 or None")
        return 1
    if requested is None:
        return default_steps_per_execution(steps_per_epoch)
    if requested < 1 or steps_per_epoch % requested:
        raise ValueError(f"steps_per_execution={requested} must be a positive divisor of the {steps_per_epoch} steps of an epoch")
    return requested


def read_checkpoint(checkpoint_dir: Path, config: Config, image_shape: tuple[int, int, int]) -> dict | None:
    """The checkpoint's state.json (epoch, history, fingerprint, meta) if ``train`` would resume from it, else None."""
    policy = precision.resolve(config.train.precision)
    state, _ = _matching_state(Path(checkpoint_dir), _fingerprint(config, tuple(int(s) for s in image_shape), policy))
    return state


def clear_checkpoint(checkpoint_dir: Path) -> None:
    """Delete the checkpoint folder (after a training finished and its outputs are saved)."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


class _NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where, for a useful error.

    keras.callbacks.TerminateOnNaN stops just as fast but says nothing about where or why.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failure: tuple[str, str] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With several steps per execution ``batch`` is the last step of the execution, which is as
        # precise as the logs get: the loss is checked once per execution.
        if self.failure is None:
            self._check((logs or {}).get("loss"), f"epoch {self._epoch + 1}, by batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if self.failure is None:
            self._check((logs or {}).get("val_loss"), f"epoch {epoch + 1}, validation")

    def _check(self, loss, where: str) -> None:
        if loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            self.failure = ("nan" if math.isnan(value) else "inf", where)
            self.model.stop_training = True


class _EpochRecorder(keras.callbacks.Callback):
    """Appends each finished epoch to the history and, given a folder, checkpoints it there."""

    def __init__(self, history: list[dict[str, Any]], guard: _NonFiniteGuard):
        super().__init__()
        self.history = history
        self.guard = guard
        self.checkpoint: tuple[Path, str, dict] | None = None  # (folder, fingerprint, meta)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failure:  # never checkpoint a diverged model over the last good one
            return
        logs = logs or {}
        row = {"epoch": epoch + 1, **{k: _float_or_none(logs.get(k)) for k in HISTORY_KEYS}}
        row.update({k: _float_or_none(logs[k]) for k in OPTIONAL_HISTORY_KEYS if k in logs})
        self.history.append(row)
        if self.checkpoint:
            folder, fingerprint, meta = self.checkpoint
            _save_checkpoint(folder, self.model, self.history, fingerprint, meta)


def _save_checkpoint(folder: Path, model: VAE, history: list[dict], fingerprint: str, meta: dict) -> None:
    epoch = history[-1]["epoch"]
    model_file = f"model-epoch-{epoch:04d}.keras"
    with atomic_path(folder / model_file) as tmp:
        model.save(tmp)
    state = {"epoch": epoch, "history": history, "fingerprint": fingerprint, "meta": meta, "model_file": model_file}
    write_json(folder / STATE_FILE, state)
    for old in folder.glob("model-epoch-*.keras"):
        if old.name != model_file:
            old.unlink(missing_ok=True)


def _load_checkpoint_model(path: Path) -> VAE:
    import zipfile

    # Keras reports a truncated or overwritten .keras file as "File not found", which misleads.
    if not zipfile.is_zipfile(path):
        raise TrainingError(f"{path}: the checkpoint is damaged (not a .keras zip file); delete {path.parent} to start the training afresh")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises ValueError, OSError, KeyError or zipfile errors for a damaged file
        raise TrainingError(
            f"{path}: cannot load the checkpoint ({first_line(err)}); delete {path.parent} to start the training afresh"
        ) from None


def _matching_state(folder: Path, fingerprint: str) -> tuple[dict | None, str | None]:
    """(state, None) for a usable checkpoint; (None, reason) for one to replace; (None, None) for none."""
    path = folder / STATE_FILE
    if not path.exists():
        return None, None
    try:
        state = read_json(path, "the training starts afresh")
    except DataError as err:
        return None, str(err)
    if state.get("fingerprint") != fingerprint:
        return None, "it was made with other train/data settings, seed or image shape"
    if not (folder / str(state.get("model_file"))).is_file():
        return None, f"its model file {state.get('model_file')} is missing"
    return state, None


def _fingerprint(config: Config, image_shape: tuple[int, ...], policy: str) -> str:
    """Identifies the settings a checkpoint belongs to; any change there means starting afresh.

    The resolved ``policy`` counts, not train.precision: ``auto`` on another machine may mean another precision.
    """
    train = config.train.model_dump(mode="json")
    defaults = TrainSection().model_dump(mode="json")
    for key in _LATER_TRAIN_KEYS:
        if train[key] == defaults[key]:
            del train[key]
    identity = {
        "policy": policy,
        "train": train,
        "data": config.data.model_dump(mode="json"),
        "seed": config.base.seed,
        "image_shape": list(image_shape),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def _training_batches(x: ShardedImages | np.ndarray, batch_size: int, seed: int, skip: int, binarize: bool = False):
    from vaelab.data.shards import image_batches

    # One endless stream of per-epoch shuffles (batches never straddle two epochs); a resumed run skips
    # the batches already trained on, so it sees the same order (and dynamic bits) an uninterrupted run would.
    return image_batches(x, batch_size, seed=seed, repeat=True, skip=skip, binarize_seed=seed if binarize else None)


def _validation_batches(x: ShardedImages | np.ndarray, batch_size: int):
    from vaelab.data.shards import image_batches

    return image_batches(x, batch_size) if len(x) else None


def _verbosity(verbose: str | int) -> str | int:
    # A progress bar redrawn in a log file or CI output is noise; one line per epoch reads better.
    if verbose == "auto" and not sys.stdout.isatty():
        return 2
    return verbose


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)
