"""Which ``tf.distribute`` strategy trains the model: data-parallel over every device one machine has.

With more than one GPU (or CPU split into logical devices) training runs under ``MirroredStrategy``:
each device gets an equal slice of every batch, gradients are summed across devices, and
``train.batch_size`` stays the *global* batch, so the optimisation matches single-device training.
With one device the default strategy keeps the model exactly as it was.

Several processes (``MultiWorkerMirroredStrategy``, on one machine or several) need a ``TF_CONFIG``
cluster description in each; :func:`training_strategy` picks that strategy when ``TF_CONFIG`` names more
than one worker, and :mod:`vaelab.workers` starts such a cluster on this machine. Worker 0 is the chief:
it alone logs to MLflow and writes files (:func:`is_chief`).
"""

from __future__ import annotations

import json
import logging
import os

from vaelab.errors import ConfigError

log = logging.getLogger(__name__)


def training_strategy():
    """``MultiWorkerMirroredStrategy`` for a ``TF_CONFIG`` cluster, ``MirroredStrategy`` for >1 local device, else the default."""
    import tensorflow as tf

    if _cluster_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = _training_devices()
    if len(devices) > 1:
        log.info("training on %d devices with MirroredStrategy: %s", len(devices), ", ".join(devices))
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def spans_workers(strategy) -> bool:
    """Whether ``strategy`` runs replicas in several processes (MultiWorkerMirroredStrategy on a cluster)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and _cluster_workers() > 1


def _training_devices() -> list[str]:
    import tensorflow as tf

    # GPUs when there are any (the CPU then only feeds them); otherwise the CPU's logical devices.
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def is_chief() -> bool:
    """True outside a cluster, and in the cluster's chief: its "chief" task or, without one, worker 0 (TensorFlow's rule)."""
    config = _tf_config()
    task, cluster = config.get("task") or {}, config.get("cluster") or {}
    if not cluster or not task:
        return True
    if task.get("type") == "chief":
        return True
    return "chief" not in cluster and task.get("type") == "worker" and int(task.get("index", 0)) == 0


def worker_label() -> str:
    """``worker 1 of 2`` inside a cluster (for log lines), empty outside one."""
    config = _tf_config()
    task = config.get("task") or {}
    if _cluster_workers() < 2 or not task:
        return ""
    return f"{task.get('type', 'worker')} {task.get('index', 0)} of {_cluster_workers()}"


def _cluster_workers() -> int:
    cluster = _tf_config().get("cluster") or {}
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker")) if isinstance(cluster, dict) else 0


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return {}
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict) or not isinstance(config.get("task", {}), dict):
        raise ConfigError(
            f"TF_CONFIG={text[:200]!r}: expected JSON like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
        )
    return config
