"""How good the VAE's samples look to a classifier: a Fréchet distance, confidence and mode coverage.

``sample_fid_classifier`` is the Fréchet distance between Gaussians fitted to the classifier's
penultimate-layer features of real test images and of images decoded from the prior N(0, I). It is
FID's formula in the feature space of vaelab's own small MNIST classifier, not Inception-v3's:
its values are comparable between vaelab runs that share a classifier, never with published FIDs.

``sample_confidence`` is the mean of the classifier's top probability on samples (blurry in-between
digits score low), and ``sample_label_entropy_bits`` the entropy of the histogram of predicted labels:
log2(10) = 3.32 bits when samples cover all ten digits evenly, 0 when they collapse onto one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vaelab.evaluation.real_features import Statistics, feature_statistics

if TYPE_CHECKING:
    import keras

    from vaelab.data.shards import ShardedImages
    from vaelab.evaluation.passes import Samples


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance of N(mean_a, cov_a) and N(mean_b, cov_b).

    ``|mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2))``. The last trace is taken
    as the sum of square roots of the eigenvalues of the symmetric ``S cov_b S`` with ``S = cov_a^(1/2)``,
    which has the same eigenvalues as ``cov_a cov_b`` and stays real for singular covariances.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mean_a.shape * 2:
        raise ValueError(
            f"means and covariances must be (F,) and (F, F) for one F; received means {mean_a.shape}, {mean_b.shape} "
            f"and covariances {cov_a.shape}, {cov_b.shape}"
        )
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(_symmetric(root_a @ cov_b @ root_a))
    trace_root = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root
    return float(max(distance, 0.0))  # rounding can leave -1e-12 for identical inputs


def feature_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two ``(N, F)`` feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def mean_confidence(probabilities: np.ndarray) -> float:
    """Mean over images of the largest class probability, in [1/classes, 1]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean(np.max(probabilities, axis=1)))


def label_entropy_bits(probabilities: np.ndarray) -> float:
    """Entropy in bits of the histogram of predicted (most probable) labels: spread of samples over classes."""
    probabilities = np.asarray(probabilities)
    counts = np.bincount(np.argmax(probabilities, axis=1), minlength=probabilities.shape[1])
    shares = counts[counts > 0] / counts.sum()
    return float(-np.sum(shares * np.log2(shares)) + 0.0)  # + 0.0 turns -0.0 into 0.0


def sample_quality(
    classifier: keras.Model,
    vae: Samples,
    real_images: ShardedImages | np.ndarray,
    n_samples: int,
    seed: int,
    batch_size: int = 1000,
    binary: bool = False,
    real_statistics: Statistics | None = None,
) -> dict[str, float]:
    """``sample_fid_classifier``, ``sample_confidence`` and ``sample_label_entropy_bits`` of ``n_samples``
    images decoded from the prior, against ``real_images`` (the test set).

    The latent points are :func:`~vaelab.evaluation.metrics.prior_points` with the same seed (the first ones are the
    samples picture). Samples are decoded and scored a batch at a time, so only their features are kept.
    With ``binary`` (a model of binarized data, whose test images are bits), each sample is the model's own
    draw of bits from the decoded pixel probabilities, seeded, so that like is compared with like.
    ``real_statistics``: the features' mean and covariance of ``real_images`` if known already
    (:mod:`vaelab.evaluation.real_features`), which spares their pass through the classifier.
    """
    from vaelab.evaluation import passes
    from vaelab.evaluation.classifier import features_and_probabilities
    from vaelab.evaluation.metrics import prior_points

    z = prior_points(vae, n_samples, seed)
    bits = np.random.default_rng([seed, 1])  # its own stream: the latent points stay those of sample_prior
    decode = passes.decode(vae)

    def scored(batch: np.ndarray):
        probabilities = np.asarray(decode(batch))
        if binary:
            probabilities = (bits.random(probabilities.shape) < probabilities).astype(np.float32)
        return features_and_probabilities(classifier, probabilities, batch_size)

    sample_features, sample_probabilities = passes.in_batches(scored, z, batch_size)
    if real_statistics is None:
        real_statistics = feature_statistics(features_and_probabilities(classifier, real_images, batch_size)[0])
    return {
        "sample_fid_classifier": frechet_distance(*real_statistics, *feature_statistics(sample_features)),
        "sample_confidence": mean_confidence(sample_probabilities),
        "sample_label_entropy_bits": label_entropy_bits(sample_probabilities),
    }


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(_symmetric(matrix))
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    # Products of symmetric matrices are symmetric only up to rounding; eigh reads one triangle.
    return (matrix + matrix.T) / 2.0
