"""Test-set numbers and the arrays behind the plots; computation only, nothing is written here.

Which latent point each metric uses:

- Reconstruction metrics (``test_mse_per_pixel``) and the pictures decode the posterior mean ``mu``:
  deterministic, and what "the model's reconstruction" of an image usually means.
- ``test_loss`` and the negative ELBO decode one ``z ~ q(z|x)`` per image, drawn with a generator
  seeded by ``base.seed``: the training objective and the ELBO are expectations over q, and a single
  sample is an unbiased estimate of them (decoding ``mu`` would understate both).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops

from vaelab.config.schema import Config
from vaelab.errors import DataError
from vaelab.evaluation import passes
from vaelab.losses import bernoulli_log_likelihood, gaussian_log_density, kl_divergence, reconstruction_error
from vaelab.metric_names import evaluate_neg_elbo_metric
from vaelab.priors import log_prior

if TYPE_CHECKING:
    from vaelab.data.processed import Splits
    from vaelab.data.shards import ShardedImages
    from vaelab.model import VAE

# Train images the latent classifiers are fitted on: plenty for 5-NN on a few dimensions, and quick.
CLASSIFIER_TRAIN_IMAGES = 10_000
KNN_NEIGHBOURS = 5
LOSS_TERMS = ("mse_per_pixel", "kl_per_image", "loss", "neg_elbo_nats")  # what loss_terms averages, in this order


def evaluate(model: VAE, splits: Splits, config: Config) -> dict[str, float]:
    """Metrics of ``model`` on ``splits.x_test``, computed in batches of ``evaluate.batch_size``.

    ``test_mse_per_pixel``, ``test_kl_per_image`` (nats), ``test_loss`` (the training objective with the
    model's ``r_loss_factor`` and reconstruction kind), the negative ELBO under the Bernoulli decoder
    (named by :func:`vaelab.metric_names.evaluate_neg_elbo_metric`: comparable across models on the same
    data), and the test accuracies of a 5-nearest-neighbour and a logistic-regression
    classifier fitted on the posterior means of training images.
    """
    x_test = splits.x_test
    if len(x_test) == 0:
        raise DataError("the test split is empty; check data.max_test and re-run the preprocess stage")
    means, test_means = loss_terms(model, x_test, config.evaluate.batch_size, config.base.seed)
    elbo = means.pop("neg_elbo_nats")
    metrics = {f"test_{key}": value for key, value in means.items()}
    metrics[evaluate_neg_elbo_metric(config)] = elbo
    if splits.labelled:  # an image folder without class subfolders has nothing to classify
        metrics.update(latent_classifier_accuracies(model, splits, test_means, config))
    return metrics


def mean_negative_elbo(model: VAE, x: ShardedImages | np.ndarray, batch_size: int, seed: int) -> float:
    """Bernoulli negative ELBO in nats averaged over ``x``, one z sample per image."""
    return loss_terms(model, x, batch_size, seed)[0]["neg_elbo_nats"]


def loss_terms(model: VAE, x_all: ShardedImages | np.ndarray, batch_size: int, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """Per-image means of ``mse_per_pixel``, ``kl_per_image``, ``loss`` and ``neg_elbo_nats`` over ``x_all``,
    and the posterior means ``(N, z_dim)``."""
    noise = keras.random.SeedGenerator(seed)
    compute = _per_image_terms(model)
    totals = dict.fromkeys(LOSS_TERMS, 0.0)
    means = []
    for start in range(0, len(x_all), batch_size):
        x = np.asarray(x_all[start : start + batch_size], dtype="float32")
        # Drawn outside the compiled pass, batch by batch, so the draws are those of an eager loop with this seed.
        eps = keras.random.normal((len(x), latent_dim(model)), seed=noise)
        terms, mu = compute(x, eps)
        for key, values in zip(LOSS_TERMS, terms, strict=True):
            # float64 sums: the mean over 10,000 images should not depend on the batch size.
            totals[key] += float(np.sum(ops.convert_to_numpy(values), dtype=np.float64))
        means.append(ops.convert_to_numpy(mu))
    return {key: total / len(x_all) for key, total in totals.items()}, np.concatenate(means)


def latent_classifier_accuracies(model: VAE, splits: Splits, test_means: np.ndarray, config: Config) -> dict[str, float]:
    """How well the class can be read off ``mu``: test accuracy of 5-NN and of logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(config.base.seed)
    count = min(CLASSIFIER_TRAIN_IMAGES, len(splits.x_train))
    # Sorted indices read a memory-mapped array front to back.
    chosen = np.sort(rng.choice(len(splits.x_train), size=count, replace=False))
    # A chunk at a time: 10,000 images of 128 x 128 x 3 would be 2 GB as float32.
    batch_size = config.evaluate.batch_size
    train_means = np.concatenate(
        [encode_means(model, splits.x_train[chosen[start : start + batch_size]], batch_size) for start in range(0, count, batch_size)]
    )
    train_labels = np.asarray(splits.y_train[chosen])
    test_labels = np.asarray(splits.y_test)

    knn = KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBOURS, count)).fit(train_means, train_labels)
    if len(np.unique(train_labels)) < 2:
        # Logistic regression needs two classes; with one, predicting it always is the only sensible answer.
        logreg_accuracy = float(np.mean(test_labels == train_labels[0]))
    else:
        logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train_means, train_labels)
        logreg_accuracy = float(logreg.score(test_means, test_labels))
    return {"latent_knn_accuracy": float(knn.score(test_means, test_labels)), "latent_logreg_accuracy": logreg_accuracy}


def encode_means(model: VAE, x: ShardedImages | np.ndarray, batch_size: int, limit: int | None = None) -> np.ndarray:
    """Posterior means ``mu`` of images ``x`` (of its first ``limit``, if given): ``(N, z_dim)``.

    ``x`` is read one batch at a time, so it may be a split on disk (``ShardedImages``).
    """
    encode = passes.encode(model)
    return passes.in_batches(lambda batch: encode(batch)[0], x, batch_size, limit)


def latent_arithmetic(
    model: VAE,
    x: ShardedImages | np.ndarray,
    mu: np.ndarray,
    labels: np.ndarray,
    strengths: Sequence[float],
    batch_size: int,
    rows: int = 5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Images of class 0 moved along the latent step from class 0 to class 1, or None if a class is missing.

    The step is ``mean(mu | class 1) - mean(mu | class 0)`` over ``mu`` (posterior means of ``x[:len(mu)]``
    with ``labels``). Returns the first ``rows`` class-0 images ``(rows, H, W, C)`` and the decoded
    ``mu_i + s * step`` for each strength ``s``: ``(rows, len(strengths), H, W, C)``.
    """
    shift = attribute_shift(mu, labels, strengths, rows)
    if shift is None:
        return None
    chosen, z = shift
    decoded = passes.in_batches(passes.decode(model), z.reshape(-1, z.shape[-1]), batch_size)
    return np.asarray(x[chosen], dtype="float32"), decoded.reshape(len(chosen), len(strengths), *decoded.shape[1:])


def attribute_shift(mu: np.ndarray, labels: np.ndarray, strengths: Sequence[float], rows: int = 5) -> tuple[np.ndarray, np.ndarray] | None:
    """The chapter's attribute vector at work: which class-0 images, and their codes moved towards class 1.

    The step is ``mean(mu | class 1) - mean(mu | class 0)``. Returns the indices of the first ``rows`` class-0
    images and ``mu_i + s * step`` for each strength ``s``, float32 ``(rows, len(strengths), z_dim)``; None if a
    class has no image.
    """
    labels = np.asarray(labels)
    if not (np.any(labels == 0) and np.any(labels == 1)):
        return None
    step = mu[labels == 1].mean(axis=0) - mu[labels == 0].mean(axis=0)  # (z_dim,)
    chosen = np.flatnonzero(labels == 0)[:rows]
    z = mu[chosen][:, np.newaxis, :] + np.asarray(strengths, dtype="float32")[np.newaxis, :, np.newaxis] * step
    return chosen, z.astype("float32")


def reconstruct(model: VAE, x: ShardedImages | np.ndarray, batch_size: int) -> np.ndarray:
    """Deterministic reconstructions: the decoder applied to the posterior mean of each image."""
    encode, decode = passes.encode(model), passes.decode(model)
    return passes.in_batches(lambda batch: decode(encode(batch)[0]), x, batch_size)


def sample_prior(model: VAE, n: int, seed: int, batch_size: int = 1000) -> np.ndarray:
    """``n`` images decoded from ``z ~ p(z)`` (:func:`prior_points`); the same seed gives the same images."""
    return passes.in_batches(passes.decode(model), prior_points(model, n, seed), batch_size)


def prior_points(model: passes.Samples, n: int, seed: int) -> np.ndarray:
    """``n`` latent points ``(n, z_dim)`` float32 drawn from the model's prior with a generator seeded by ``seed``.

    N(0, I): standard normal draws. VampPrior: a uniformly drawn component c for each point, then a draw from
    its Gaussian ``q(z | u_c)``, the components' means and variances read once from the model.
    """
    rng = np.random.default_rng(seed)
    components = model.prior_components()
    if components is None:
        return rng.standard_normal((n, latent_dim(model))).astype("float32")
    means, log_vars = (ops.convert_to_numpy(t) for t in components)
    chosen = rng.integers(len(means), size=n)
    return (means[chosen] + np.exp(0.5 * log_vars[chosen]) * rng.standard_normal(means[chosen].shape)).astype("float32")


def decode_grid(model: VAE, grid_size: int, span: float = 0.9) -> np.ndarray:
    """Decoded images over a ``grid_size`` x ``grid_size`` grid of the 2-D latent plane: ``(rows, cols, H, W, C)``.

    Grid lines sit at evenly spaced quantiles of N(0, 1) covering its central ``span`` of probability
    (0.9: from the 5% to the 95% quantile, z in [-1.64, 1.64]), so each cell holds about the same prior
    mass. z[0] grows along a row, z[1] grows upwards (row 0 holds the largest z[1]).
    """
    z_dim = latent_dim(model)
    if z_dim != 2:
        raise ValueError(f"a latent grid needs z_dim 2; this model has z_dim {z_dim}")
    images = passes.in_batches(passes.decode(model), latent_grid_points(grid_size, span), 1000)
    return images.reshape(grid_size, grid_size, *images.shape[1:])


def latent_grid_points(grid_size: int, span: float = 0.9) -> np.ndarray:
    """The ``(grid_size * grid_size, 2)`` latent points of :func:`decode_grid`, row by row, float32."""
    if not 0 < span < 1:
        raise ValueError(f"span must lie strictly between 0 and 1; received span={span}")
    tail = (1.0 - span) / 2
    values = np.array([NormalDist().inv_cdf(q) for q in np.linspace(tail, 1.0 - tail, grid_size)], dtype="float32")
    z0, z1 = np.meshgrid(values, values[::-1])  # (rows, cols) each
    return np.stack([z0.ravel(), z1.ravel()], axis=1)  # (rows * cols, 2)


def _per_image_terms(model: VAE):
    """Compiled ``(x, eps) -> (LOSS_TERMS' per-image values, mu)``: one encode and two decodes per batch."""

    def terms(x, eps):
        mu, log_var = model.encode(x, training=False)  # (batch, z_dim) each
        z = mu + ops.exp(0.5 * log_var) * eps
        logits_mean = model.decode_logits(mu, training=False)
        logits_sampled = model.decode_logits(z, training=False)
        components = model.prior_components()
        # A VampPrior has no closed-form KL: the estimate log q(z|x) - log p(z) at the z decoded, as in training.
        kl = kl_divergence(mu, log_var) if components is None else gaussian_log_density(z, mu, log_var) - log_prior(z, components)
        per_image = (
            reconstruction_error(x, logits_mean, "mse"),
            kl,
            model.r_loss_factor * reconstruction_error(x, logits_sampled, model.reconstruction) + kl,
            kl - bernoulli_log_likelihood(x, logits_sampled),
        )
        return per_image, mu

    specs = passes.images_spec(model.encoder), passes.latent_spec(model)
    return passes.cached_on(model, "loss_terms", lambda: passes.compiled(terms, *specs))


def latent_dim(model: passes.Decodes) -> int:
    return int(model.decoder.inputs[0].shape[-1])
