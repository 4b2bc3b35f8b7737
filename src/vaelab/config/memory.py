"""Checks of a valid config against this machine's memory: a size is refused when what it alone makes the
program hold exceeds the RAM. The counts are :mod:`vaelab.sizes`' (lower bounds, so a refused value could not
have run); this module feeds them the config's values and names the key to reduce, with the largest value
that would fit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, TypeVar

from pydantic import BaseModel

from vaelab import sizes
from vaelab.config.schema import ClassifierSection, Config, TrainSection

_TRAINING = "training holds 16 bytes per weight and 4 per layer output of each batch image"
_Settings = TypeVar("_Settings", bound=BaseModel)


def vae_size_of(train: TrainSection, shape: tuple[int, int, int]) -> sizes.ModelSize:
    """:func:`vaelab.sizes.vae_size` of the VAE that ``train`` describes."""
    return sizes.vae_size(
        shape,
        train.z_dim,
        list(zip(train.encoder_filters, train.encoder_kernels, train.encoder_strides, strict=True)),
        list(zip(train.decoder_filters, train.decoder_kernels, train.decoder_strides, strict=True)),
        batch_norm=train.use_batch_norm,
        dropout=train.dropout_rate > 0,
        draws=train.iwae_samples if train.loss == "iwae" else 1,
        pseudo_images=train.vamp_components if train.prior == "vamp" else 0,
    )


def classifier_size_of(settings: ClassifierSection, shape: tuple[int, int, int], n_classes: int) -> sizes.ModelSize:
    """:func:`vaelab.sizes.classifier_size` of the CNN that ``settings`` describes."""
    return sizes.classifier_size(shape, settings.filters, settings.feature_units, settings.dropout_rate > 0, n_classes)


def memory_error(config: Config) -> dict[str, Any] | None:
    """The first size that cannot fit in this machine's memory, as a pydantic-style error; else None."""
    memory = sizes.physical_memory_bytes()
    if memory is None:
        return None
    shape = sizes.image_shape(config.data.dataset, config.data.image_size)
    n_classes = sizes.class_count(config.data.dataset)

    def train_need(train: TrainSection) -> int:
        return vae_size_of(train, shape).training_bytes(train.batch_size)

    def classifier_need(settings: ClassifierSection) -> int:
        return classifier_size_of(settings, shape, n_classes).training_bytes(settings.batch_size)

    vae = vae_size_of(config.train, shape)
    sampled = sizes.FLOAT32 * (config.train.z_dim + config.classifier.feature_units)
    epochs = "the training history holds {} bytes per epoch"
    vae_epoch, classifier_epoch = sizes.VAE_EPOCH_BYTES, sizes.CLASSIFIER_EPOCH_BYTES
    checks: list[tuple[str, BaseModel, Callable[[Any], int], Sequence[str], str]] = [
        ("train", config.train, train_need, ("z_dim", "batch_size"), _TRAINING),
        ("train", config.train, lambda t: vae_epoch * t.epochs, ("epochs",), epochs.format(vae_epoch)),
        ("classifier", config.classifier, classifier_need, ("feature_units", "batch_size"), _TRAINING),
        ("classifier", config.classifier, lambda c: classifier_epoch * c.epochs, ("epochs",), epochs.format(classifier_epoch)),
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
            lambda e: sizes.IMPORTANCE_WEIGHT_BYTES * e.nll_samples,
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
        ("sweep", config.sweep, lambda s: vae_epoch * s.epochs, ("epochs",), epochs.format(vae_epoch)),
    ]
    for section, settings, need, keys, why in checks:
        error = _too_big(section, settings, need, keys, why, memory)
        if error:
            return error
    return _sweep_too_big(config, train_need, memory)


def _too_big(
    section: str, settings: _Settings, need: Callable[[_Settings], int], keys: Sequence[str], why: str, memory: int
) -> dict[str, Any] | None:
    """None if ``need(settings)`` bytes fit in ``memory``. Else an error naming the key of ``keys`` furthest above
    the largest value that would fit with the others unchanged, or the section if no one key alone can fit."""
    if need(settings) <= memory:
        return None
    bounds = {key: sizes.largest_fitting(_varying(need, settings, key), memory) for key in keys}
    fixable = {key: bound for key, bound in bounds.items() if bound >= 1}
    if not fixable:
        return {
            "loc": (section,),
            "msg": f"needs at least {sizes.gib(need(settings))} of memory, more than this machine's {sizes.gib(memory)} ({why}); "
            f"reduce {', '.join(keys)} or the layer sizes",
            "input": settings.model_dump(),
        }
    key = max(fixable, key=lambda k: Fraction(getattr(settings, k), fixable[k]))  # exact: sizes may exceed a float
    return {
        "loc": (section, key),
        "msg": f"must be at most {fixable[key]} to fit in this machine's {sizes.gib(memory)} of memory ({why})",
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
            bound = sizes.largest_fitting(_varying(train_need, widest, key), memory)
            return {
                "loc": ("sweep", "space", key, "high"),
                "msg": f"must be at most {bound} to fit in this machine's {sizes.gib(memory)} of memory ({_TRAINING})",
                "input": config.sweep.space[key].high,
            }
    return None


def _varying(need: Callable[[_Settings], int], settings: _Settings, key: str) -> Callable[[int], int]:
    """``need`` as a function of ``settings.<key>`` alone, the other settings held as they are."""
    return lambda n: need(settings.model_copy(update={key: n}))
