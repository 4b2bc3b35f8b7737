"""Compiled forward passes of the VAE and the classifier, traced once per model and reused for every batch.

Calling a Keras model eagerly on each batch runs its layers op by op through Python; a ``tf.function`` runs
them as one graph. Each pass is traced with the batch dimension left open (``None``), so a short last batch
does not trace it again, and is cached on the model it belongs to, so every metric that needs it shares it.
The passes compute in the model's own dtype policy (mixed bfloat16 if it was trained so); whatever comes
out of them that a loss or likelihood reads is float32 (see :mod:`vaelab.model`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import keras
import numpy as np
import tensorflow as tf
from keras import ops

if TYPE_CHECKING:
    from vaelab.data.shards import ShardedImages
    from vaelab.model import VAE


def encode(model: VAE):
    """``x (batch, H, W, C) -> (mu, log_var)``, each ``(batch, z_dim)``."""
    return cached_on(model, "encode", lambda: compiled(lambda x: model.encode(x, training=False), images_spec(model.encoder)))


class Decodes(Protocol):
    """What decoding asks of a model: ``decoder``, a Keras model from latent points ``(batch, z_dim)`` to images.
    The VAE has it; so does a test's stand-in that decodes to chosen pictures."""

    @property
    def decoder(self) -> keras.Model: ...


class Samples(Decodes, Protocol):
    """What sampling the prior asks of a model besides decoding: ``prior_components()``, the VampPrior's Gaussians
    ``(means, log_vars)`` or None for N(0, I) (see :meth:`vaelab.model.VAE.prior_components`)."""

    def prior_components(self) -> Any: ...


def decode(model: Decodes):
    """``z (batch, z_dim) -> pixel probabilities (batch, H, W, C)``."""
    return cached_on(model, "decode", lambda: compiled(lambda z: model.decoder(z, training=False), latent_spec(model)))


def judge(classifier: keras.Model, feature_layer: str):
    """``x -> (features, probabilities)``: the output of the classifier's layer named ``feature_layer`` and its
    class probabilities. The caller names the layer: the classifier module, which builds it, imports this one."""

    def build():
        both = keras.Model(classifier.input, [classifier.get_layer(feature_layer).output, classifier.output])
        return compiled(lambda x: both(x, training=False), images_spec(classifier))

    return cached_on(classifier, "judge", build)


def in_batches(function: Callable[[np.ndarray], Any], x: ShardedImages | np.ndarray, batch_size: int, limit: int | None = None):
    """``function`` over ``x`` (its first ``limit`` rows) a batch at a time, outputs concatenated as NumPy arrays.

    ``function`` may return one tensor or a tuple of them; the result has the same structure. ``x`` is read one
    batch at a time, so it may be a split on disk (``ShardedImages``).
    """
    count = len(x) if limit is None else min(limit, len(x))
    outputs = [function(np.asarray(x[start : min(start + batch_size, count)], dtype="float32")) for start in range(0, count, batch_size)]
    if not outputs:
        return np.zeros((0,), dtype="float32")
    if isinstance(outputs[0], (tuple, list)):
        return tuple(np.concatenate([ops.convert_to_numpy(part[i]) for part in outputs]) for i in range(len(outputs[0])))
    return np.concatenate([ops.convert_to_numpy(part) for part in outputs])


def compiled(function, *specs: tf.TensorSpec):
    """``function`` as one graph, traced once for every batch size the specs allow."""
    return tf.function(function, input_signature=list(specs))


def images_spec(model: keras.Model) -> tf.TensorSpec:
    """Float32 images of any batch size, shaped like ``model``'s input."""
    return tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)


def latent_spec(model: Decodes) -> tf.TensorSpec:
    """Float32 latent points ``(batch, z_dim)`` of any batch size."""
    return tf.TensorSpec((None, int(model.decoder.inputs[0].shape[-1])), tf.float32)


def cached_on(model: keras.Model, name: str, build: Callable[[], Any]):
    """The pass called ``name`` of ``model``, built by ``build()`` on first use."""
    attribute = f"_vaelab_pass_{name}"
    found = getattr(model, attribute, None)
    if found is None:
        found = build()
        # object.__setattr__: a Keras model would otherwise try to track the function as a layer attribute.
        object.__setattr__(model, attribute, found)
    return found
