"""Importance-sampled estimate of the negative log-likelihood -log p(x), in nats (Burda et al.'s IWAE bound).

For each image, K latent points z_k are drawn from the encoder's q(z|x), and

    -log p(x) ~ -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)

with the Bernoulli decoder p(x|z) (computed from its logits) and the model's prior p(z): N(0, I), or for a
VampPrior model the mixture over its pseudo-images, encoded once per estimate. Its expectation
is an upper bound on -log p(x) that tightens as K grows; with K = 1 its expectation equals the negative
ELBO. It is a likelihood only on binary images (data.binarize dynamic or fixed); see vaelab.metric_names.

Cost and memory: K decoder passes per image. The passes run in a compiled function over at most
``max_decoded`` latent points at a time (several images' draws, or a slice of one image's), and only K
weights per image are kept, so memory does not grow with K or the number of images. Image ``i``'s draws come
from its own generator seeded by ``(seed, i)``, so a figure does not depend on the batch size, on which
other images are estimated, or on being resumed part-way (see vaelab.likelihood_command). The sum over k is
a log-sum-exp in float64, so weights spanning hundreds of nats neither over- nor underflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from vaelab.losses import bernoulli_log_likelihood, gaussian_log_density, mixture_log_density

if TYPE_CHECKING:
    from vaelab.data.shards import ShardedImages
    from vaelab.model import VAE


def image_draws(seed: int, index: int, k: int, z_dim: int) -> np.ndarray:
    """The K standard-normal draws of image ``index``: ``(K, z_dim)`` float32, the same in every run."""
    return np.random.default_rng([seed, index]).standard_normal((k, z_dim)).astype(np.float32)


def importance_sampled_nll(
    model: VAE,
    x: ShardedImages | np.ndarray,
    k: int,
    seed: int,
    max_decoded: int = 1000,
    indices=None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Per-image estimate of -log p(x) in nats from K importance samples: ``(N,)`` float64.

    ``indices`` are the images' numbers in their split (default ``0..N-1``), which seed their draws;
    ``progress`` is called with the number of images finished after each pass.
    """
    out = np.empty(len(x), dtype=np.float64)
    for first, weights in _weights_by_image(model, x, k, seed, max_decoded, indices):
        out[first : first + len(weights)] = -log_mean_exp(weights, axis=1)
        if progress is not None:
            progress(first + len(weights))
    return out


def log_mean_exp(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(mean(exp(values)))`` along ``axis``, in float64, shifted by the maximum so nothing overflows."""
    values = np.asarray(values, dtype=np.float64)
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    shifted = np.log(np.mean(np.exp(values - peak), axis=axis, keepdims=True)) + peak
    return np.squeeze(shifted, axis=axis)


def subset_indices(n: int, n_images: int | None, seed: int) -> np.ndarray:
    """The seeded subset of ``n_images`` of ``n`` images (all if None), sorted so shards are read front to back."""
    if n_images is None or n_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_images, replace=False))


def estimate_nll(
    model: VAE, x: ShardedImages | np.ndarray, k: int, n_images: int | None, seed: int, max_decoded: int = 1000, first: int | None = None
) -> float:
    """Mean importance-sampled NLL over ``n_images`` images of ``x`` chosen with ``seed`` (None: all of them).

    With ``first``, over only the first ``first`` of those images (all if fewer): a cheaper estimate of the same
    figure, whose images are each estimated exactly as in the full one.
    """
    chosen = subset_indices(len(x), n_images, seed)[:first]
    images = x[chosen] if len(chosen) < len(x) else x
    return float(np.mean(importance_sampled_nll(model, images, k, seed, max_decoded, indices=chosen)))


def _weights_by_image(
    model: VAE, x: ShardedImages | np.ndarray, k: int, seed: int, max_decoded: int, indices
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(first, weights)``: log importance weights ``(n, K)`` of images ``first .. first + n - 1``."""
    if k < 1 or max_decoded < 1:
        raise ValueError(f"k and max_decoded must be positive; received k={k}, max_decoded={max_decoded}")
    indices = np.arange(len(x)) if indices is None else np.asarray(indices)
    from vaelab.evaluation import passes

    compute, encode = _compiled_weights(model), passes.encode(model)
    components = model.prior_components()
    if components is not None:  # the VampPrior's Gaussians: the same for every pass, so encoded once
        means, log_vars = (np.asarray(t, dtype=np.float32) for t in components)
        weights_of = compute
        compute = lambda *args: weights_of(*args, means, log_vars)  # noqa: E731 - the normal pass's signature plus the prior
    images_per_pass = max(1, max_decoded // k)
    draws_per_pass = min(k, max_decoded)
    for first in range(0, len(x), images_per_pass):
        batch = np.asarray(x[first : first + images_per_pass], dtype=np.float32)
        mu, log_var = (np.asarray(t) for t in encode(batch))
        z_dim = mu.shape[1]
        eps = np.stack([image_draws(seed, int(i), k, z_dim) for i in indices[first : first + len(batch)]])
        weights = np.empty((len(batch), k), dtype=np.float64)
        for start in range(0, k, draws_per_pass):
            part = eps[:, start : start + draws_per_pass]
            weights[:, start : start + part.shape[1]] = np.asarray(compute(batch, mu, log_var, part), dtype=np.float64)
        yield first, weights


def _compiled_weights(model: VAE):
    """A compiled ``(x, mu, log_var, eps) -> (images, draws)`` of log importance weights, cached on the model;
    a VampPrior model's takes its prior's ``means, log_vars`` (C, z_dim) as two more arguments."""
    import tensorflow as tf

    from vaelab.evaluation import passes

    def log_likelihood_at(x, mu, log_var, eps):
        images, draws, z_dim = tf.shape(eps)[0], tf.shape(eps)[1], tf.shape(eps)[2]
        z = mu[:, None, :] + tf.exp(0.5 * log_var)[:, None, :] * eps  # (images, draws, z_dim)
        logits = model.decode_logits(tf.reshape(z, (images * draws, z_dim)), training=False)
        repeated = tf.repeat(x, draws, axis=0)  # image-major, like z
        return z, tf.reshape(bernoulli_log_likelihood(repeated, logits), (images, draws))

    def log_weights(x, mu, log_var, eps):
        z, log_likelihood = log_likelihood_at(x, mu, log_var, eps)
        # log N(z; 0, I) - log N(z; mu, diag(exp(log_var))); the log(2 pi) terms cancel.
        log_prior_over_posterior = -0.5 * tf.reduce_sum(tf.square(z), -1) + 0.5 * tf.reduce_sum(tf.square(eps) + log_var[:, None, :], -1)
        return log_likelihood + log_prior_over_posterior

    def log_weights_vamp(x, mu, log_var, eps, means, log_vars):
        z, log_likelihood = log_likelihood_at(x, mu, log_var, eps)
        log_prior = tf.reshape(mixture_log_density(tf.reshape(z, (-1, tf.shape(z)[2])), means, log_vars), tf.shape(log_likelihood))
        return log_likelihood + log_prior - gaussian_log_density(z, mu[:, None, :], log_var[:, None, :])

    def build():
        latent = passes.latent_spec(model)
        # Images and draws per pass open: the last pass of an image's draws, or of the images, is shorter.
        draws = tf.TensorSpec((None, None, latent.shape[-1]), tf.float32)
        if model.prior_components() is None:
            return passes.compiled(log_weights, passes.images_spec(model.encoder), latent, latent, draws)
        return passes.compiled(log_weights_vamp, passes.images_spec(model.encoder), latent, latent, draws, latent, latent)

    return passes.cached_on(model, "log_weights", build)
