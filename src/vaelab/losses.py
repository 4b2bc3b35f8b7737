"""The VAE's loss terms as pure functions of tensors, shared by training, validation and evaluation.

Every function takes a batch and returns per-example values (or their batch means), computed with
``keras.ops`` so the same code runs inside ``train_step`` and on NumPy arrays in the evaluate stage.
"""

from __future__ import annotations

from keras import ops

RECONSTRUCTION_KINDS = ("mse", "bce")

# Keeps log(x_hat) and log(1 - x_hat) finite when the sigmoid saturates to exactly 0 or 1.
_EPSILON = 1e-7


def kl_divergence(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, I)) in nats, summed over latent dimensions: shape (batch,)."""
    mu = ops.convert_to_tensor(mu, dtype="float32")
    log_var = ops.convert_to_tensor(log_var, dtype="float32")
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=-1)


def reconstruction_error(x, x_hat, kind: str):
    """Per-example mean over pixels (and channels) of the squared error ("mse") or cross-entropy ("bce")."""
    pixel_axes = tuple(range(1, len(ops.shape(x))))
    return ops.mean(_pixel_errors(x, x_hat, kind), axis=pixel_axes)


def vae_loss(x, x_hat, mu, log_var, r_loss_factor: float, kind: str):
    """Batch means ``(total, reconstruction, kl)`` with ``total = r_loss_factor * reconstruction + kl``.

    This is the loss the chapter's text describes: a per-pixel reconstruction error weighted by
    ``r_loss_factor`` plus the closed-form KL term. The book's notebook instead applied Keras'
    ``KLDivergence`` loss to the images themselves and never used ``r_loss_factor``.
    """
    reconstruction = ops.mean(reconstruction_error(x, x_hat, kind))
    kl = ops.mean(kl_divergence(mu, log_var))
    return r_loss_factor * reconstruction + kl, reconstruction, kl


def bernoulli_negative_elbo(x, x_hat, mu, log_var):
    """Per-example negative ELBO in nats under a Bernoulli decoder: cross-entropy summed over pixels + KL.

    Unlike the weighted training loss this is comparable across models (an upper bound on -log p(x)).
    """
    pixel_axes = tuple(range(1, len(ops.shape(x))))
    return ops.sum(_pixel_errors(x, x_hat, "bce"), axis=pixel_axes) + kl_divergence(mu, log_var)


def _pixel_errors(x, x_hat, kind: str):
    x = ops.convert_to_tensor(x, dtype="float32")
    x_hat = ops.convert_to_tensor(x_hat, dtype="float32")
    if kind == "mse":
        return ops.square(x - x_hat)
    if kind == "bce":
        p = ops.clip(x_hat, _EPSILON, 1.0 - _EPSILON)
        return -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    raise ValueError(f"unknown reconstruction kind {kind!r}; allowed: {', '.join(RECONSTRUCTION_KINDS)}")
