"""A small CNN classifier of the dataset's images, used as a judge of the VAE's samples.

Its penultimate layer (``features``) is the feature space of ``sample_fid_classifier`` and its
softmax output gives the confidence and predicted-label spread of samples (see ``vaelab.evaluation.quality``).
No I/O here: the classifier stage in ``vaelab.stages`` saves the model, its test accuracy and the real images'
feature statistics (``vaelab.evaluation.real_features``); the evaluate stage loads them (``vaelab.evaluation.report.load_classifier``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

from vaelab.config.schema import ClassifierSection

if TYPE_CHECKING:
    from vaelab.data.processed import Splits
    from vaelab.data.shards import ShardedImages

FEATURE_LAYER = "features"
# The classifier stage's files inside paths.classifier (evaluate loads the first).
CLASSIFIER_FILE = "classifier.keras"
NO_LABELS_FILE = "NO_LABELS.txt"  # written instead of the model when the data has no class labels


def build_classifier(image_shape: tuple[int, int, int], n_classes: int, settings: ClassifierSection) -> keras.Model:
    """Blocks of two 3x3 convolutions and 2x2 max-pooling per ``settings.filters`` entry, then the feature layer.

    Pooling pads odd sizes ("same"), so any image size works: 28 -> 14 -> 7 for MNIST and two blocks.
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes; received n_classes={n_classes}")
    images = keras.Input(shape=tuple(image_shape), name="images")
    x = images
    for block, filters in enumerate(settings.filters):
        for i in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{block}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, H/2^blocks * W/2^blocks * filters[-1])
    x = keras.layers.Dropout(settings.dropout_rate, name="dropout_conv")(x)
    features = keras.layers.Dense(settings.feature_units, activation="relu", name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(settings.dropout_rate, name="dropout_features")(features)
    probabilities = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(images, probabilities, name="classifier")


def train_classifier(
    splits: Splits, settings: ClassifierSection, seed: int, verbose: str | int = "auto", binarize_seed: int | None = None
) -> keras.Model:
    """Fit a new classifier on ``splits.x_train`` / ``y_train``, validating on ``x_val`` after every epoch.

    Images stream from disk batch by batch (``image_batches``), reshuffled with ``seed`` every epoch. With
    ``binarize_seed`` the training images are binarized afresh as they are read (data.binarize dynamic): the
    classifier then learns the binary images it will judge, not the grey ones stored for the VAE to binarize.
    """
    from vaelab.data.shards import image_batches

    keras.utils.set_random_seed(seed)
    model = build_classifier(splits.image_shape, len(splits.class_names), settings)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    batch = settings.batch_size
    validation = image_batches(splits.x_val, batch, labels=splits.y_val) if len(splits.x_val) else None
    model.fit(
        image_batches(splits.x_train, batch, seed=seed, labels=splits.y_train, binarize_seed=binarize_seed),
        epochs=settings.epochs,
        validation_data=validation,
        shuffle=False,  # the dataset reshuffles itself, seeded
        verbose=verbose,
    )
    return model


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Share of images whose most probable class (from ``probabilities``, ``(N, classes)``) is the label."""
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(y)))


def features_and_probabilities(model: keras.Model, x: ShardedImages | np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The feature layer ``(N, feature_units)`` and class probabilities ``(N, classes)`` of images ``x``."""
    from vaelab.evaluation import passes

    if not len(x):
        n_classes = int(model.outputs[0].shape[-1])
        return np.zeros((0, model.get_layer(FEATURE_LAYER).units), "float32"), np.zeros((0, n_classes), "float32")
    return passes.in_batches(passes.judge(model, FEATURE_LAYER), x, batch_size)


def accepts(model: keras.Model, image_shape: tuple[int, int, int], n_classes: int) -> str | None:
    """None if ``model`` classifies images of ``image_shape`` into ``n_classes``; else why not, in one line."""
    model_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    model_classes = int(model.outputs[0].shape[-1])
    if model_shape != tuple(image_shape):
        return f"it takes images of shape {list(model_shape)}, the data has {list(image_shape)}"
    if model_classes != n_classes:
        return f"it predicts {model_classes} classes, the data has {n_classes}"
    return None
