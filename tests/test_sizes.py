"""vaelab.sizes counts the networks without building them (fed by vaelab.config.memory); here the count meets Keras.

Each count must equal what Keras builds from the same settings: every weight (count_params), the trainable
ones, and the numbers each layer outputs for one image (Flatten and Reshape only relabel their input, and a
Dropout of rate 0 passes it on, so those are not outputs of their own; nor is the decoder's final sigmoid,
which training never computes: its loss reads the logits before it, see VAE.decode_logits).
"""

from __future__ import annotations

import math

import keras
import pytest

from vaelab.config.memory import classifier_size_of, vae_size_of
from vaelab.config.schema import ClassifierSection, TrainSection
from vaelab.evaluation.classifier import build_classifier
from vaelab.model import DECODER_OUTPUT, build_vae

VAES = {
    "shipped_mnist": (TrainSection(), (28, 28, 1)),
    "batch_norm_dropout_rgb": (
        TrainSection(z_dim=16, use_batch_norm=True, dropout_rate=0.25, decoder_filters=(64, 64, 32, 3)),
        (32, 32, 3),
    ),
    "vamp_prior_rgb": (
        TrainSection(z_dim=3, decoder_filters=(64, 64, 32, 3), prior="vamp", vamp_components=7),
        (16, 16, 3),
    ),
    "odd_kernels_three_layers": (
        TrainSection(
            z_dim=5,
            encoder_filters=(8, 16, 4),
            encoder_kernels=(5, 3, 1),
            encoder_strides=(2, 1, 2),
            decoder_filters=(4, 8, 1),
            decoder_kernels=(1, 3, 5),
            decoder_strides=(2, 1, 2),
        ),
        (12, 12, 1),
    ),
}
CLASSIFIERS = {
    "shipped_mnist": (ClassifierSection(), (28, 28, 1), 10),
    "no_dropout_odd_rgb": (ClassifierSection(filters=(4, 8, 16), feature_units=7, dropout_rate=0.0), (30, 30, 3), 2),
}


def _layer_outputs(model: keras.Model) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
            continue
        if isinstance(layer, keras.layers.Dropout) and layer.rate == 0:
            continue
        if layer.name == DECODER_OUTPUT:
            continue
        total += math.prod(layer.output.shape[1:])
    return total


def _trainable(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(VAES))
def test_vae_size_counts_what_keras_builds(name: str) -> None:
    train, shape = VAES[name]
    model = build_vae(shape, train, seed=0)
    size = vae_size_of(train, shape)
    assert size.weights == model.count_params()
    assert size.trainable == _trainable(model)
    assert sum(size.outputs) == _layer_outputs(model.encoder) + _layer_outputs(model.decoder)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_size_counts_what_keras_builds(name: str) -> None:
    settings, shape, n_classes = CLASSIFIERS[name]
    model = build_classifier(shape, n_classes, settings)
    size = classifier_size_of(settings, shape, n_classes)
    assert size.weights == model.count_params() == _trainable(model)
    assert sum(size.outputs) == _layer_outputs(model)
