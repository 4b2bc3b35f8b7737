"""What the networks and their training hold in memory, counted from plain settings without building anything.

The counts take only the arrays a setting forces into memory (weights, optimizer state, one batch's layer
outputs, per-epoch history), never TensorFlow's own overhead, so they are lower bounds: a size they put above
this machine's RAM could not have run, one below may still be too large. The image shape follows from the
dataset's name and the image size alone, so every count is known before any data exists.
:mod:`vaelab.config.memory` turns them into bounds on the params.

The arguments are plain numbers, not the config's sections: this module sits below the config, which calls it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from vaelab.data.sources import DATASETS

FLOAT32 = 4
IMPORTANCE_WEIGHT_BYTES = 8  # the test NLL's log-weights are float64 (vaelab.evaluation.likelihood)
# Training holds, per trainable weight, the weight, its gradient and Adam's two moment estimates.
TRAINED_WEIGHT_BYTES = 4 * FLOAT32
# vaelab.training appends one dict per epoch ("epoch" and the seven HISTORY_KEYS) and keeps them all.
VAE_EPOCH_BYTES = sys.getsizeof(dict.fromkeys(range(8))) + 8 * sys.getsizeof(0.0)
# Keras' History keeps per epoch a float in each of four lists (loss, accuracy and their val_ forms).
CLASSIFIER_EPOCH_BYTES = 4 * (sys.getsizeof(0.0) + 8)  # the float and the list's pointer to it


def physical_memory_bytes() -> int | None:
    """This machine's RAM; None where the OS does not say (then no size is refused for memory)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class ModelSize:
    """What a network holds in memory, counted from its settings without building it."""

    weights: int  # all of them, as Keras' count_params() counts them
    trainable: int
    outputs: tuple[int, ...]  # numbers each layer outputs for one image, the input first
    # A VAE trained on the IWAE bound runs the layers from outputs[repeated_from] on (the latent heads onwards)
    # once per draw; a VampPrior's step also encodes its pseudo-images, encoded_extra more images per step.
    repeated_from: int = 0
    draws: int = 1
    encoded_extra: int = 0

    def training_bytes(self, batch_size: int) -> int:
        # Backpropagation needs every layer's output of the batch at once.
        frozen = self.weights - self.trainable
        once, repeated = sum(self.outputs[: self.repeated_from]), sum(self.outputs[self.repeated_from :])
        per_batch = batch_size * (once + self.draws * repeated) + self.encoded_extra * once
        return FLOAT32 * frozen + TRAINED_WEIGHT_BYTES * self.trainable + FLOAT32 * per_batch

    def inference_bytes(self, batch_size: int) -> int:
        # Without gradients each output can go once the next layer has it; the largest one must fit.
        return FLOAT32 * (self.weights + batch_size * max(self.outputs))


# One convolution: (filters, kernel size, stride).
ConvLayer = tuple[int, int, int]


def image_shape(dataset: str, image_size: int) -> tuple[int, int, int]:
    """(height, width, channels) of the images preprocess makes of ``dataset`` (``image_size`` for a folder)."""
    spec = DATASETS.get(dataset)
    return spec.image_shape if spec else (image_size, image_size, 3)  # a folder's images become RGB


def class_count(dataset: str) -> int:
    """A registered dataset's number of classes; a folder's are known only after download, and are at least 2."""
    spec = DATASETS.get(dataset)
    return len(spec.class_names) if spec else 2


def vae_size(
    shape: tuple[int, int, int],
    z_dim: int,
    encoder: Sequence[ConvLayer],
    decoder: Sequence[ConvLayer],
    batch_norm: bool,
    dropout: bool,
    draws: int = 1,
    pseudo_images: int = 0,
) -> ModelSize:
    """The VAE that vaelab.model.build_vae makes for ``shape``, counted layer by layer; ``dropout``: a rate above 0,
    ``draws``: train.iwae_samples of an IWAE-trained one, ``pseudo_images``: a VampPrior's components (0 for N(0, I))."""
    height, width, channels = shape
    trainable = math.prod(shape) * pseudo_images
    frozen = 0
    outputs = [height * width * channels]
    norm = int(batch_norm)
    per_conv = 2 + norm + int(dropout)  # convolution, LeakyReLU, batch norm, dropout
    for filters, kernel, stride in encoder:
        height, width = -(-height // stride), -(-width // stride)  # "same" padding rounds up
        trainable += kernel * kernel * channels * filters + filters + 2 * norm * filters
        frozen += 2 * norm * filters  # batch norm's moving mean and variance
        outputs += [height * width * filters] * per_conv
        channels = filters
    flat, z = height * width * channels, z_dim
    trainable += 2 * (flat * z + z) + z * flat + flat  # mu, log_var and the decoder's first Dense layer
    repeated_from = len(outputs)
    outputs += [z, z, z, flat]  # mu, log_var, the sampled z, the Dense layer
    for i, (filters, kernel, stride) in enumerate(decoder):
        height, width = height * stride, width * stride
        trainable += kernel * kernel * channels * filters + filters
        if i < len(decoder) - 1:
            trainable += 2 * norm * filters
            frozen += 2 * norm * filters
            outputs += [height * width * filters] * per_conv
        else:
            outputs.append(height * width * filters)  # the logits; training never applies the decoder's sigmoid
        channels = filters
    return ModelSize(trainable + frozen, trainable, tuple(outputs), repeated_from, draws, pseudo_images)


def classifier_size(shape: tuple[int, int, int], filters: Sequence[int], feature_units: int, dropout: bool, n_classes: int) -> ModelSize:
    """The CNN that vaelab.evaluation.classifier.build_classifier makes, counted layer by layer."""
    height, width, channels = shape
    weights = 0
    outputs = [height * width * channels]
    for block in filters:
        weights += 9 * channels * block + block + 9 * block * block + block  # two 3x3 convolutions
        outputs += [height * width * block] * 2
        height, width = -(-height // 2), -(-width // 2)  # 2x2 pooling, "same" padding
        outputs.append(height * width * block)
        channels = block
    flat, units = height * width * channels, feature_units
    weights += flat * units + units + units * n_classes + n_classes
    outputs += [flat] * int(dropout) + [units] * (1 + int(dropout)) + [n_classes]
    return ModelSize(weights, weights, tuple(outputs))


def largest_fitting(need: Callable[[int], int], memory: int) -> int:
    """The largest n >= 0 with ``need(n) <= memory``, for a ``need`` that grows linearly with n."""
    fixed, step = need(0), need(1) - need(0)
    if fixed > memory or step <= 0:
        return 0
    return (memory - fixed) // step


def gib(size: int) -> str:
    return f"{Decimal(size) / 2**30:.3g} GiB"  # Decimal: a size past 1e308 bytes would overflow a float
