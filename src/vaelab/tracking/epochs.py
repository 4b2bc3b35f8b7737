"""Per-epoch metrics: a Keras callback that logs each epoch as it ends, and the epochs a killed training
checkpointed but never logged, caught up when it resumes."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vaelab.errors import VaelabError
from vaelab.tracking.store import tracking_uri, with_retries

log = logging.getLogger(__name__)


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every numeric value of an epoch's logs with ``step = epoch + 1``, in one request per epoch.

    Steps are 1-based epoch numbers, so a training resumed at epoch 4 continues with step 5 in the
    same run. The run is the one active when training starts, unless ``run_id`` names another.
    """

    def __init__(self, run_id: str | None = None):
        super().__init__()
        self.run_id = run_id

    def on_train_begin(self, logs=None):
        if self.run_id is None:
            active = mlflow.active_run()
            if active is None:
                raise VaelabError("MlflowEpochLogger needs an active run; train inside vaelab.tracking.runs.start_run(...)")
            self.run_id = active.info.run_id

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in (logs or {}).items() if _is_number(value)}
        if "learning_rate" not in values and self.model is not None and getattr(self.model, "optimizer", None):
            values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
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
    metrics = [
        Metric(key, float(value), timestamp, int(row["epoch"]))
        for row in history
        if int(row["epoch"]) not in logged
        for key, value in sorted(row.items())
        if key != "epoch" and _is_number(value)
    ]
    if metrics:
        log.info("logging %d epochs the interrupted run had checkpointed but not logged", len({m.step for m in metrics}))
        with_retries(lambda: client.log_batch(run_id, metrics=metrics))


def _is_number(value: Any) -> bool:
    # Keras hands over Python floats, NumPy scalars or 0-d tensors; anything else is not a metric.
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
