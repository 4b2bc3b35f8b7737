"""Which ``tf.distribute`` strategy trains the model: data-parallel over every device one machine has.

With more than one GPU (or CPU split into logical devices) training runs under ``MirroredStrategy``:
each device gets an equal slice of every batch, gradients are summed across devices, and
``train.batch_size`` stays the *global* batch, so the optimisation matches single-device training.
With one device the default strategy keeps the model exactly as it was.

Several machines (``MultiWorkerMirroredStrategy``) need a ``TF_CONFIG`` cluster description on every
worker; :func:`training_strategy` picks that strategy when ``TF_CONFIG`` names more than one worker.
"""

from __future__ import annotations

import json
import logging
import os

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


def split_cpu(count: int) -> None:
    """Present the CPU to TensorFlow as ``count`` logical devices (for trying MirroredStrategy without GPUs).

    Must run before TensorFlow touches a device (any op or tensor); afterwards TensorFlow refuses, and
    this raises RuntimeError saying so.
    """
    import tensorflow as tf

    if count < 1:
        raise ValueError(f"count must be a positive integer; received count={count}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:
        raise RuntimeError(f"cannot split the CPU into {count} devices once TensorFlow is initialised ({err})") from None


def _training_devices() -> list[str]:
    import tensorflow as tf

    # GPUs when there are any (the CPU then only feeds them); otherwise the CPU's logical devices.
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def _cluster_workers() -> int:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        return len(json.loads(text).get("cluster", {}).get("worker", []))
    except (ValueError, AttributeError):
        return 0
