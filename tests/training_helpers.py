"""What the tests of the training loop share: a tiny network's settings and tools to interrupt and compare runs.
The fixtures built on them (``square_splits``, ``tiny_train_config``) are in conftest.py."""

from __future__ import annotations

import keras
import numpy as np
from tiny import tiny_network

IMAGE_SHAPE = (28, 28, 1)
# A network small enough that an epoch over 256 images takes well under a second.
TINY_TRAIN = {
    **tiny_network([4, 8], [8, 1]),
    "train.batch_size": 32,
    "train.epochs": 2,
    "train.learning_rate": 0.002,
}


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights]


class InterruptAfterEpoch(keras.callbacks.Callback):
    """Plays a user pressing Ctrl-C once the given (1-based) epoch has finished."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt
