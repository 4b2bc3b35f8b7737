"""MirroredStrategy on this CPU split into two logical devices gives the loss curve of one device.

The split must happen before TensorFlow initialises, so each training runs in its own subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny import dotted, tiny_settings

pytestmark = pytest.mark.slow

OVERRIDES = dotted(tiny_settings({"train": {"epochs": 4, "learning_rate": 0.002}}))

# Same data, seed and global batch in both processes; only the device count differs. The two
# replicas draw their own sampling noise, so the curves agree within noise rather than exactly.
TRAINING = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    devices, overrides = int(sys.argv[1]), json.loads(sys.argv[2])
    from vaelab.distribute import training_strategy
    if devices > 1:  # the CPU as several logical devices; TensorFlow allows it only before its first op
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    from types import SimpleNamespace
    from vaelab.config.load import with_overrides
    from vaelab.config.schema import Config
    from vaelab.training import train

    rng = np.random.default_rng(0)
    def strokes(n):
        x = rng.uniform(0, 0.1, (n, 28, 28, 1)).astype("float32")
        for i, label in enumerate(rng.integers(0, 3, n)):
            x[i, 6 + 7 * label : 10 + 7 * label, 4:24, 0] = 0.9
        return x
    splits = SimpleNamespace(x_train=strokes(256), x_val=strokes(64), image_shape=(28, 28, 1))
    config = with_overrides(Config(), overrides)
    result = train(config, splits, verbose=0)

    # One plain-SGD step on one global batch from fresh weights: Adam hides a wrongly scaled gradient
    # (it divides by the gradient's own size), SGD moves the weights by exactly lr * gradient.
    import keras
    from vaelab.model import build_vae
    keras.utils.set_random_seed(0)
    with training_strategy().scope():
        model = build_vae((28, 28, 1), config.train, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-4))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(splits.x_train[:32], batch_size=32, epochs=1, verbose=0, shuffle=False)
    step = sum(float(np.sum((w.numpy() - b) ** 2)) for w, b in zip(model.trainable_weights, before)) ** 0.5
    print(json.dumps({
        "sgd_step": step,
        "replicas": training_strategy().num_replicas_in_sync,
        "loss": [row["loss"] for row in result.history],
        "val_loss": [row["val_loss"] for row in result.history],
    }))
    """
)


def _train(devices: int, tmp_path: Path) -> dict:
    script = tmp_path / "train_on_devices.py"
    script.write_text(TRAINING)
    done = subprocess.run(
        [sys.executable, str(script), str(devices), json.dumps(OVERRIDES)], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_logical_devices_match_one_within_five_percent(tmp_path: Path) -> None:
    one = _train(1, tmp_path)
    two = _train(2, tmp_path)

    assert (one["replicas"], two["replicas"]) == (1, 2)
    # Epoch 1 starts from the same weights on the same batches: the means differ only by sampling noise.
    # The tolerance 5% is about 3x the spread between two single-device runs with different noise seeds.
    for key in ("loss", "val_loss"):
        for single, mirrored in zip(one[key], two[key], strict=True):
            assert mirrored == pytest.approx(single, rel=0.05), (key, one[key], two[key])
    assert two["val_loss"][-1] < 0.8 * two["val_loss"][0]
    # The global-batch gradient: without the 1/replicas loss scale the two devices' sum would be 2x.
    assert two["sgd_step"] == pytest.approx(one["sgd_step"], rel=0.1)


def test_one_device_uses_the_default_strategy() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vaelab.distribute import training_strategy; import tensorflow as tf; "
            "print(type(training_strategy()).__name__, training_strategy() is tf.distribute.get_strategy())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["_DefaultDistributionStrategy", "True"]
