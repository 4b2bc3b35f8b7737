"""The VAE's loss terms as pure functions of tensors, shared by training, validation and evaluation.

Every function takes a batch and returns per-example values (or their batch means), computed with
``keras.ops`` so the same code runs inside ``train_step`` and on NumPy arrays in the evaluate stage.

The reconstruction term compares images with what the decoder outputs *before* its sigmoid: pixel
probabilities for "mse" (the chapter's squared error, computed on ``sigmoid(logits)``) and the logits
themselves for "bce", whose Bernoulli cross-entropy is computed from logits so that it stays exact and
finite when the sigmoid would round to 0 or 1.
"""

from __future__ import annotations

import math

from keras import ops

RECONSTRUCTION_KINDS = ("mse", "bce")
_LOG_2PI = math.log(2.0 * math.pi)


def kl_divergence(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, I)) in nats, summed over latent dimensions: shape (batch,)."""
    mu = ops.convert_to_tensor(mu, dtype="float32")
    log_var = ops.convert_to_tensor(log_var, dtype="float32")
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=-1)


def bernoulli_cross_entropy(x, logits):
    """Per-pixel ``-log p(x | logits)`` of a Bernoulli with ``p = sigmoid(logits)``; ``x`` may be grey (in [0, 1]).

    Written as ``max(l, 0) - x * l + log(1 + exp(-|l|))``, which equals ``-(x log p + (1 - x) log(1 - p))``
    without evaluating a log of 0 or an exp that overflows, for any logit.
    """
    x = ops.convert_to_tensor(x, dtype="float32")
    logits = ops.convert_to_tensor(logits, dtype="float32")
    return ops.relu(logits) - x * logits + ops.log1p(ops.exp(-ops.abs(logits)))


def reconstruction_error(x, logits, kind: str):
    """Per-example mean over pixels (and channels) of the squared error ("mse") or cross-entropy ("bce").

    ``logits`` are the decoder's outputs before its sigmoid (see :meth:`vaelab.model.VAE.decode_logits`).
    """
    pixel_axes = tuple(range(1, len(ops.shape(x))))
    return ops.mean(_pixel_errors(x, logits, kind), axis=pixel_axes)


def vae_loss(x, logits, mu, log_var, r_loss_factor: float, kind: str, kl_weight=1.0):
    """Batch means ``(total, reconstruction, kl)`` with ``total = r_loss_factor * reconstruction + kl_weight * kl``.

    This is the loss the chapter's text describes: a per-pixel reconstruction error weighted by
    ``r_loss_factor`` plus the closed-form KL term. The book's notebook instead applied Keras'
    ``KLDivergence`` loss to the images themselves and never used ``r_loss_factor``. With "bce" and
    ``r_loss_factor`` equal to the number of pixels (784 for MNIST), ``total`` is the negative ELBO.
    ``kl_weight`` below 1 is KL warm-up; ``kl`` is reported unweighted.
    """
    return weighted_loss(x, logits, kl_divergence(mu, log_var), r_loss_factor, kind, kl_weight)


def weighted_loss(x, logits, kl_per_example, r_loss_factor: float, kind: str, kl_weight=1.0):
    """:func:`vae_loss` with the per-example KL (batch,) given: a VampPrior's is an estimate, not a closed form."""
    reconstruction = ops.mean(reconstruction_error(x, logits, kind))
    kl = ops.mean(kl_per_example)
    return r_loss_factor * reconstruction + kl_weight * kl, reconstruction, kl


def bernoulli_log_likelihood(x, logits):
    """``log p(x | z)`` under the Bernoulli decoder, summed over pixels: shape (batch,)."""
    pixel_axes = tuple(range(1, len(ops.shape(x))))
    return -ops.sum(bernoulli_cross_entropy(x, logits), axis=pixel_axes)


def bernoulli_negative_elbo(x, logits, mu, log_var):
    """Per-example negative ELBO in nats under a Bernoulli decoder: cross-entropy summed over pixels + KL.

    Unlike the weighted training loss this is comparable across models (an upper bound on -log p(x)),
    provided ``x`` is binary: on grey levels it is a cross-entropy, not the probability of any data.
    """
    return -bernoulli_log_likelihood(x, logits) + kl_divergence(mu, log_var)


def gaussian_log_density(z, mu, log_var):
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last axis; the arguments broadcast against each other."""
    z = ops.convert_to_tensor(z, dtype="float32")
    mu = ops.convert_to_tensor(mu, dtype="float32")
    log_var = ops.convert_to_tensor(log_var, dtype="float32")
    return -0.5 * ops.sum(_LOG_2PI + log_var + ops.square(z - mu) * ops.exp(-log_var), axis=-1)


def standard_normal_log_density(z):
    """``log N(z; 0, I)`` of each row of ``z`` (batch, z_dim): shape (batch,)."""
    z = ops.convert_to_tensor(z, dtype="float32")
    return -0.5 * ops.sum(_LOG_2PI + ops.square(z), axis=-1)


def mixture_log_density(z, means, log_vars):
    """``log (1/C) sum_c N(z; means[c], diag(exp(log_vars[c])))``, the VampPrior's density: shape (batch,).

    ``z`` is (batch, z_dim) and the C components (C, z_dim); the sum over components is a log-sum-exp, so
    points far from every component (densities below float32's smallest number) keep a finite log density.
    """
    per_component = gaussian_log_density(ops.expand_dims(z, 1), ops.expand_dims(means, 0), ops.expand_dims(log_vars, 0))
    components = ops.shape(per_component)[1]
    return ops.logsumexp(per_component, axis=1) - ops.log(ops.cast(components, "float32"))


def iwae_loss(log_likelihood, log_prior, log_posterior, kl_weight=1.0):
    """Batch means ``(loss, reconstruction, kl)`` of the importance-weighted bound over k draws per image.

    Each argument is (batch, k): ``log p(x|z_j)``, ``log p(z_j)`` and ``log q(z_j|x)`` at draw j of image i. The
    loss is ``-mean_i [logsumexp_j(log w_ij) - log k]`` with ``log w = log p(x|z) + kl_weight * (log p(z) - log
    q(z|x))``: with ``kl_weight`` 1, Burda et al.'s bound; with k = 1, a one-draw negative ELBO (its KL the
    estimate ``log q - log p``). The log-sum-exp subtracts its maximum, so weights of any size stay finite.
    ``reconstruction`` (-log p(x|z)) and ``kl`` (log q - log p) are reported as means over the draws, unweighted.
    """
    log_likelihood = ops.convert_to_tensor(log_likelihood, dtype="float32")
    kl = ops.convert_to_tensor(log_posterior, dtype="float32") - ops.convert_to_tensor(log_prior, dtype="float32")
    return -ops.mean(iwae_bound(log_likelihood - kl_weight * kl)), -ops.mean(log_likelihood), ops.mean(kl)


def iwae_bound(log_weights):
    """``logsumexp_j(log_weights[:, j]) - log k`` of (batch, k) log importance weights: shape (batch,), in nats.

    Its expectation is a lower bound on log p(x) that rises with k (Burda et al. 2016, theorem 1).
    """
    log_weights = ops.convert_to_tensor(log_weights, dtype="float32")
    draws = ops.cast(ops.shape(log_weights)[1], "float32")
    return ops.logsumexp(log_weights, axis=1) - ops.log(draws)


def _pixel_errors(x, logits, kind: str):
    if kind == "mse":
        x = ops.convert_to_tensor(x, dtype="float32")
        return ops.square(x - ops.sigmoid(ops.convert_to_tensor(logits, dtype="float32")))
    if kind == "bce":
        return bernoulli_cross_entropy(x, logits)
    raise ValueError(f"unknown reconstruction kind {kind!r}; allowed: {', '.join(RECONSTRUCTION_KINDS)}")
