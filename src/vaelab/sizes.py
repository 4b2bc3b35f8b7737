"""Memory bounds on the params: what a setting alone makes the program hold, against this machine's RAM.

A size is refused when what it alone makes the program hold in memory exceeds this machine's RAM. The
estimates count only the arrays a setting forces into memory (weights, optimizer state, one batch's layer
outputs, per-epoch history), never TensorFlow's own overhead, so they are lower bounds: a refused value could
not have run, an accepted one may still be too large. The image shape follows from data.* alone (a
registered dataset's shape, or image_size x image_size RGB for an image folder), so every bound is known
before any data exists; the stages refuse processed data made from other data.* (Config.split_settings).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config.py imports this module to validate; these names are for annotations only
    from pydantic import BaseModel

    from vaelab.config import ClassifierSection, Config, DataSection, TrainSection

FLOAT32 = 4
IMPORTANCE_WEIGHT_BYTES = 8  # the test NLL's log-weights are float64 (vaelab.evaluation.likelihood)
# Training holds, per trainable weight, the weight, its gradient and Adam's two moment estimates.
TRAINED_WEIGHT_BYTES = 4 * FLOAT32
# vaelab.training appends one dict per epoch ("epoch" and the seven HISTORY_KEYS) and keeps them all.
VAE_EPOCH_BYTES = sys.getsizeof(dict.fromkeys(range(8))) + 8 * sys.getsizeof(0.0)
# Keras' History keeps per epoch a float in each of four lists (loss, accuracy and their val_ forms).
CLASSIFIER_EPOCH_BYTES = 4 * (sys.getsizeof(0.0) + 8)  # the float and the list's pointer to it

_TRAINING = "training holds 16 bytes per weight and 4 per layer output of each batch image"


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

    def training_bytes(self, batch_size: int) -> int:
        # Backpropagation needs every layer's output of the batch at once.
        frozen = self.weights - self.trainable
        return FLOAT32 * frozen + TRAINED_WEIGHT_BYTES * self.trainable + FLOAT32 * batch_size * sum(self.outputs)

    def inference_bytes(self, batch_size: int) -> int:
        # Without gradients each output can go once the next layer has it; the largest one must fit.
        return FLOAT32 * (self.weights + batch_size * max(self.outputs))


def image_shape(data: DataSection) -> tuple[int, int, int]:
    """(height, width, channels) of the images preprocess makes from ``data``."""
    from vaelab.data.sources import DATASETS

    spec = DATASETS.get(data.dataset)
    return spec.image_shape if spec else (data.image_size, data.image_size, 3)  # a folder's images become RGB


def vae_size(train: TrainSection, shape: tuple[int, int, int]) -> ModelSize:
    """The VAE that vaelab.model.build_vae makes for ``shape``, counted layer by layer."""
    height, width, channels = shape
    trainable = frozen = 0
    outputs = [height * width * channels]
    norm = int(train.use_batch_norm)
    per_conv = 2 + norm + int(train.dropout_rate > 0)  # convolution, LeakyReLU, batch norm, dropout
    for filters, kernel, stride in zip(train.encoder_filters, train.encoder_kernels, train.encoder_strides, strict=True):
        height, width = -(-height // stride), -(-width // stride)  # "same" padding rounds up
        trainable += kernel * kernel * channels * filters + filters + 2 * norm * filters
        frozen += 2 * norm * filters  # batch norm's moving mean and variance
        outputs += [height * width * filters] * per_conv
        channels = filters
    flat, z = height * width * channels, train.z_dim
    trainable += 2 * (flat * z + z) + z * flat + flat  # mu, log_var and the decoder's first Dense layer
    outputs += [z, z, z, flat]  # mu, log_var, the sampled z, the Dense layer
    layers = list(zip(train.decoder_filters, train.decoder_kernels, train.decoder_strides, strict=True))
    for i, (filters, kernel, stride) in enumerate(layers):
        height, width = height * stride, width * stride
        trainable += kernel * kernel * channels * filters + filters
        if i < len(layers) - 1:
            trainable += 2 * norm * filters
            frozen += 2 * norm * filters
            outputs += [height * width * filters] * per_conv
        else:
            outputs.append(height * width * filters)  # the logits; training never applies the decoder's sigmoid
        channels = filters
    return ModelSize(trainable + frozen, trainable, tuple(outputs))


def classifier_size(settings: ClassifierSection, shape: tuple[int, int, int], n_classes: int) -> ModelSize:
    """The CNN that vaelab.evaluation.classifier.build_classifier makes, counted layer by layer."""
    height, width, channels = shape
    weights = 0
    outputs = [height * width * channels]
    for filters in settings.filters:
        weights += 9 * channels * filters + filters + 9 * filters * filters + filters  # two 3x3 convolutions
        outputs += [height * width * filters] * 2
        height, width = -(-height // 2), -(-width // 2)  # 2x2 pooling, "same" padding
        outputs.append(height * width * filters)
        channels = filters
    flat, units = height * width * channels, settings.feature_units
    weights += flat * units + units + units * n_classes + n_classes
    dropout = int(settings.dropout_rate > 0)
    outputs += [flat] * dropout + [units] * (1 + dropout) + [n_classes]
    return ModelSize(weights, weights, tuple(outputs))


def memory_error(config: Config) -> dict[str, Any] | None:
    """The first size that cannot fit in this machine's memory, as a pydantic-style error; else None."""
    memory = physical_memory_bytes()
    if memory is None:
        return None
    from vaelab.data.sources import DATASETS

    shape = image_shape(config.data)
    spec = DATASETS.get(config.data.dataset)
    n_classes = len(spec.class_names) if spec else 2  # a folder's classes are known after download; at least 2

    def train_need(train: TrainSection) -> int:
        return vae_size(train, shape).training_bytes(train.batch_size)

    def classifier_need(settings: ClassifierSection) -> int:
        return classifier_size(settings, shape, n_classes).training_bytes(settings.batch_size)

    vae = vae_size(config.train, shape)
    sampled = FLOAT32 * (config.train.z_dim + config.classifier.feature_units)
    epochs = "the training history holds {} bytes per epoch"
    checks = [
        ("train", config.train, train_need, ("z_dim", "batch_size"), _TRAINING),
        ("train", config.train, lambda t: VAE_EPOCH_BYTES * t.epochs, ("epochs",), epochs.format(VAE_EPOCH_BYTES)),
        ("classifier", config.classifier, classifier_need, ("feature_units", "batch_size"), _TRAINING),
        ("classifier", config.classifier, lambda c: CLASSIFIER_EPOCH_BYTES * c.epochs, ("epochs",), epochs.format(CLASSIFIER_EPOCH_BYTES)),
        (
            "evaluate",
            config.evaluate,
            lambda e: vae.inference_bytes(e.batch_size),
            ("batch_size",),
            "evaluation holds the weights and the largest layer output of each batch image, 4 bytes a number",
        ),
        (
            "evaluate",
            config.evaluate,
            lambda e: IMPORTANCE_WEIGHT_BYTES * e.nll_samples,
            ("nll_samples",),
            "the test NLL holds an 8-byte weight per sample for each test image",
        ),
        (
            "evaluate",
            config.evaluate,
            lambda e: sampled * e.quality_samples,
            ("quality_samples",),
            f"sample quality holds each sample's latent point and classifier features, {sampled} bytes",
        ),
        ("sweep", config.sweep, lambda s: VAE_EPOCH_BYTES * s.epochs, ("epochs",), epochs.format(VAE_EPOCH_BYTES)),
    ]
    for section, settings, need, keys, why in checks:
        error = _too_big(section, settings, need, keys, why, memory)
        if error:
            return error
    return _sweep_too_big(config, train_need, memory)


def _too_big(section: str, settings: BaseModel, need: Callable[[Any], int], keys: Sequence[str], why: str, memory: int):
    """None if ``need(settings)`` bytes fit in ``memory``. Else an error naming the key of ``keys`` furthest above
    the largest value that would fit with the others unchanged, or the section if no one key alone can fit."""
    if need(settings) <= memory:
        return None
    bounds = {key: _largest_fitting(_varying(need, settings, key), memory) for key in keys}
    fixable = {key: bound for key, bound in bounds.items() if bound >= 1}
    if not fixable:
        return {
            "loc": (section,),
            "msg": f"needs at least {_gib(need(settings))} of memory, more than this machine's {_gib(memory)} ({why}); "
            f"reduce {', '.join(keys)} or the layer sizes",
            "input": settings.model_dump(),
        }
    key = max(fixable, key=lambda k: Fraction(getattr(settings, k), fixable[k]))  # exact: sizes may exceed a float
    return {
        "loc": (section, key),
        "msg": f"must be at most {fixable[key]} to fit in this machine's {_gib(memory)} of memory ({why})",
        "input": getattr(settings, key),
    }


def _sweep_too_big(config: Config, train_need: Callable[[TrainSection], int], memory: int) -> dict[str, Any] | None:
    """A trial trains with a searched size at most at its range's high end; that trial must fit too."""
    for key in ("z_dim", "batch_size"):
        if key not in config.sweep.space:
            continue
        high = int(config.sweep.space[key].high)
        widest = config.train.model_copy(update={key: high})
        if train_need(widest) > memory:
            bound = _largest_fitting(_varying(train_need, widest, key), memory)
            return {
                "loc": ("sweep", "space", key, "high"),
                "msg": f"must be at most {bound} to fit in this machine's {_gib(memory)} of memory ({_TRAINING})",
                "input": config.sweep.space[key].high,
            }
    return None


def _varying(need: Callable[[Any], int], settings: BaseModel, key: str) -> Callable[[int], int]:
    """``need`` as a function of ``settings.<key>`` alone, the other settings held as they are."""
    return lambda n: need(settings.model_copy(update={key: n}))


def _largest_fitting(need: Callable[[int], int], memory: int) -> int:
    """The largest n >= 0 with ``need(n) <= memory``, for a ``need`` that grows linearly with n."""
    fixed, step = need(0), need(1) - need(0)
    if fixed > memory or step <= 0:
        return 0
    return (memory - fixed) // step


def _gib(size: int) -> str:
    return f"{Decimal(size) / 2**30:.3g} GiB"  # Decimal: a size past 1e308 bytes would overflow a float
