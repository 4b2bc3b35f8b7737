"""Per-epoch metrics: a Keras callback that logs each epoch as it ends, and the epochs a killed training
checkpointed but never logged, caught up when it resumes.

Beside Keras's own values each epoch also logs the best epoch so far: ``best_val_loss`` (the lowest
``val_loss`` up to that epoch) and ``best_epoch`` (the first epoch that reached it). The last value of each
is then the best epoch's figure that the runs table and charts show, where ``val_loss`` shows the last epoch's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vaelab.errors import VaelabError
from vaelab.tracking.store import tracking_uri, with_retries

log = logging.getLogger(__name__)

BEST_VALUE = "best_val_loss"
BEST_EPOCH = "best_epoch"
# The value the best epoch is chosen by: the validation negative ELBO, what early stopping also watches.
WATCHED = "val_loss"


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every numeric value of an epoch's logs with ``step = epoch + 1``, in one request per epoch.

    Steps are 1-based epoch numbers, so a training resumed at epoch 4 continues with step 5 in the
    same run. The run is the one active when training starts, unless ``run_id`` names another.
    """

    def __init__(self, run_id: str | None = None):
        super().__init__()
        self.run_id = run_id
        self.best: BestEpoch | None = None

    def on_train_begin(self, logs=None):
        if self.run_id is None:
            active = mlflow.active_run()
            if active is None:
                raise VaelabError("MlflowEpochLogger needs an active run; train inside vaelab.tracking.runs.start_run(...)")
            self.run_id = active.info.run_id
        # A resumed run's best epoch may be one it logged before the kill.
        client = MlflowClient()
        run_id = self.run_id
        logged = with_retries(lambda: client.get_metric_history(run_id, WATCHED))
        self.best = best_epoch_of((metric.step, metric.value) for metric in logged)

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in (logs or {}).items() if _is_number(value)}
        if "learning_rate" not in values and self.model is not None and getattr(self.model, "optimizer", None):
            values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if WATCHED in values:
            self.best = best_epoch_of([(epoch + 1, values[WATCHED])], self.best)
        if self.best is not None:
            values.update(self.best.metrics())
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, epoch + 1) for key, value in sorted(values.items())]
        run_id = self.run_id
        if run_id is None:  # Keras calls on_train_begin, which sets it, before any epoch
            raise VaelabError("MlflowEpochLogger: an epoch ended before training began; pass run_id or call on_train_begin")
        client = MlflowClient()
        with_retries(lambda: client.log_batch(run_id, metrics=metrics))


def log_missing_epochs(run_id: str, history: list[dict[str, Any]]) -> None:
    """Log the rows of a training history (``{"epoch": n, key: value}``) whose epoch the run lacks as step ``n``.

    Steps already in the run are left alone, so re-running this never duplicates a point.
    """
    client = MlflowClient(tracking_uri())
    logged = {metric.step for metric in with_retries(lambda: client.get_metric_history(run_id, "loss"))}
    timestamp = int(time.time() * 1000)
    metrics = []
    best = None
    for row in sorted(history, key=lambda row: int(row["epoch"])):
        epoch = int(row["epoch"])
        values = {key: float(value) for key, value in row.items() if key != "epoch" and _is_number(value)}
        if WATCHED in values:
            best = best_epoch_of([(epoch, values[WATCHED])], best)
        if epoch in logged:
            continue
        if best is not None:
            values.update(best.metrics())
        metrics += [Metric(key, value, timestamp, epoch) for key, value in sorted(values.items())]
    if metrics:
        log.info("logging %d epochs the interrupted run had checkpointed but not logged", len({m.step for m in metrics}))
        with_retries(lambda: client.log_batch(run_id, metrics=metrics))


@dataclass(frozen=True)
class BestEpoch:
    """The epoch (1-based) with the lowest validation loss so far, and that loss."""

    epoch: int
    val_loss: float

    def metrics(self) -> dict[str, float]:
        return {BEST_VALUE: self.val_loss, BEST_EPOCH: float(self.epoch)}


def best_epoch_of(points: Iterable[tuple[int, float]], best: BestEpoch | None = None) -> BestEpoch | None:
    """The best of ``best`` and the ``(epoch, val_loss)`` points: the lowest loss, the earliest epoch on a tie;
    a NaN loss never wins (a diverged epoch is not the best one)."""
    for epoch, value in sorted(points):
        if math.isnan(value):
            continue
        if best is None or value < best.val_loss or (value == best.val_loss and epoch < best.epoch):
            best = BestEpoch(int(epoch), float(value))
    return best


def _is_number(value: Any) -> bool:
    # Keras hands over Python floats, NumPy scalars or 0-d tensors; anything else is not a metric.
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
