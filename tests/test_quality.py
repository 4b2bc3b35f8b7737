"""Sample-quality numbers: the Fréchet distance against hand-computed Gaussians, confidence, label entropy,
and the distance in a real (tiny, trained) classifier's features between real halves and noise."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from keras import ops
from tiny import TINY

from vaelab.config.schema import ClassifierSection
from vaelab.data.processed import Splits
from vaelab.evaluation.quality import (
    feature_frechet_distance,
    frechet_distance,
    label_entropy_bits,
    mean_confidence,
    sample_quality,
)
from vaelab.evaluation.real_features import feature_statistics


def test_frechet_distance_of_isotropic_gaussians() -> None:
    # |(3, 4)|^2 + tr(I) + tr(4I) - 2 tr(2I) = 25 + 2 + 8 - 8
    assert frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2)) == pytest.approx(27.0, abs=1e-12)


def test_frechet_distance_of_non_commuting_covariances() -> None:
    # diag(1, 4)^(1/2) [[2, 1], [1, 2]] diag(1, 4)^(1/2) = [[2, 2], [2, 8]]: eigenvalues 5 +- sqrt(13), so
    # the sum of their square roots is sqrt(10 + 2 sqrt(12)); the means differ by (1, 0).
    cov_a, cov_b = np.diag([1.0, 4.0]), np.array([[2.0, 1.0], [1.0, 2.0]])
    expected = 1.0 + 5.0 + 4.0 - 2.0 * math.sqrt(10.0 + 4.0 * math.sqrt(3.0))
    assert frechet_distance(np.array([1.0, 2.0]), cov_a, np.array([0.0, 2.0]), cov_b) == pytest.approx(expected, abs=1e-12)
    assert frechet_distance(np.array([0.0, 2.0]), cov_b, np.array([1.0, 2.0]), cov_a) == pytest.approx(expected, abs=1e-12)


def test_frechet_distance_in_one_dimension_is_mean_and_sigma_gaps() -> None:
    # N(1, 2^2) vs N(-2, 5^2): (1 + 2)^2 + (2 - 5)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[25.0]])) == pytest.approx(18.0)


def test_frechet_distance_with_singular_covariances() -> None:
    # A point mass against N(0, I_3): only the other Gaussian's variance remains.
    assert frechet_distance(np.zeros(3), np.zeros((3, 3)), np.zeros(3), np.eye(3)) == pytest.approx(3.0, abs=1e-12)
    rank_one = np.outer([1.0, 2.0], [1.0, 2.0])
    assert frechet_distance(np.ones(2), rank_one, np.ones(2), rank_one) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"means \(2,\), \(3,\) and covariances \(2, 2\), \(3, 3\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_feature_statistics_use_the_unbiased_covariance() -> None:
    mean, cov = feature_statistics(np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]]))
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(cov, [[4.0, 3.0], [3.0, 3.0]])
    with pytest.raises(ValueError, match=r"at least 2 feature vectors.*\(1, 2\)"):
        feature_statistics(np.zeros((1, 2)))


def test_fitted_gaussians_recover_the_known_distance() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 2))
    b = rng.standard_normal((20000, 2)) * 2.0 + np.array([3.0, 4.0])
    assert feature_frechet_distance(a, b) == pytest.approx(27.0, rel=0.03)


def test_mean_confidence_is_the_mean_top_probability() -> None:
    assert mean_confidence(np.array([[0.9, 0.1], [0.4, 0.6]])) == pytest.approx(0.75)


def test_label_entropy_of_predicted_labels() -> None:
    one_hot = np.eye(4)
    assert label_entropy_bits(one_hot) == pytest.approx(2.0)
    assert label_entropy_bits(np.repeat(one_hot[:1], 5, axis=0)) == 0.0
    # Labels 0, 0, 0, 1 of 4 classes: -(3/4 log2 3/4 + 1/4 log2 1/4)
    three_to_one = one_hot[[0, 0, 0, 1]] * 0.7 + 0.075
    assert label_entropy_bits(three_to_one) == pytest.approx(0.8112781244591328, abs=1e-12)


def _bars(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """12x12 images of one of 3 horizontal bars on faint noise; the label says which bar."""
    labels = rng.integers(0, 3, n).astype("uint8")
    x = rng.uniform(0, 0.1, (n, 12, 12, 1)).astype("float32")
    for i, label in enumerate(labels):
        x[i, 1 + 4 * label : 3 + 4 * label, 2:10, 0] = 0.9
    return x, labels


@pytest.fixture(scope="module")
def judge():
    from vaelab.evaluation.classifier import train_classifier

    rng = np.random.default_rng(1)
    x, y = _bars(600, rng)
    splits = Splits(x, y, x[:0], y[:0], x[:0], y[:0], (12, 12, 1), ("a", "b", "c"))
    settings = ClassifierSection(**{**TINY["classifier"], "epochs": 3})
    return train_classifier(splits, settings, seed=0, verbose=0)


@pytest.mark.slow  # trains a tiny classifier once per module
def test_real_halves_are_close_and_noise_is_far_in_classifier_features(judge) -> None:
    from vaelab.evaluation.classifier import features_and_probabilities

    x_real, _ = _bars(800, np.random.default_rng(2))
    noise = np.random.default_rng(3).uniform(0, 1, x_real.shape).astype("float32")
    real, _ = features_and_probabilities(judge, x_real)
    noisy, _ = features_and_probabilities(judge, noise)
    halves = feature_frechet_distance(real[:400], real[400:])
    to_noise = feature_frechet_distance(real[:400], noisy[:400])
    assert to_noise > 20 * halves, (halves, to_noise)


class _BarDecoder:
    """A stand-in VAE whose "decoder" maps the prior's first latent coordinate onto one of the bars."""

    def __init__(self, bars: np.ndarray, collapse: bool):
        self.bars, self.collapse = bars, collapse
        self.decoder = self
        self.inputs = [SimpleNamespace(shape=(None, 2))]

    def __call__(self, z, training=False):
        # keras.ops, not NumPy: sample_quality traces the decoder into a compiled graph.
        first = z[:, 0]
        which = ops.zeros_like(first, dtype="int32") if self.collapse else ops.digitize(first, [-0.43, 0.43])
        return ops.take(ops.convert_to_tensor(self.bars), which, axis=0)

    def prior_components(self):
        return None  # its prior is N(0, I)


@pytest.mark.slow  # trains a tiny classifier once per module
def test_sample_quality_tells_full_coverage_from_collapse(judge) -> None:
    x_real, y_real = _bars(600, np.random.default_rng(4))
    prototypes = np.stack([x_real[np.argmax(y_real == label)] for label in range(3)])
    covering = sample_quality(judge, _BarDecoder(prototypes, collapse=False), x_real, 600, seed=0)
    collapsed = sample_quality(judge, _BarDecoder(prototypes, collapse=True), x_real, 600, seed=0)

    assert set(covering) == {"sample_fid_classifier", "sample_confidence", "sample_label_entropy_bits"}
    assert covering["sample_label_entropy_bits"] == pytest.approx(math.log2(3), abs=0.02)  # thirds of N(0, 1)
    assert collapsed["sample_label_entropy_bits"] == 0.0
    assert covering["sample_confidence"] > 0.9
    assert collapsed["sample_fid_classifier"] > 2 * covering["sample_fid_classifier"]
    assert sample_quality(judge, _BarDecoder(prototypes, collapse=False), x_real, 600, seed=0) == covering


class _SeeingClassifier:
    """A stand-in judge that records the images it is shown and gives fixed features and probabilities."""

    def __init__(self):
        self.shown: list[np.ndarray] = []

    def __call__(self, images, training=False):
        images = np.asarray(images)
        self.shown.append(images)
        return [images.reshape(len(images), -1)[:, :3].astype("float32"), np.full((len(images), 3), 1 / 3, "float32")]


def test_a_model_of_binarized_data_is_judged_on_its_own_draws_of_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    import vaelab.evaluation.classifier as classifier

    seen = _SeeingClassifier()
    monkeypatch.setattr(classifier, "features_and_probabilities", lambda model, x, batch_size=1000: tuple(model(x)))
    grey = np.full((3, 28, 28, 1), 0.25, dtype="float32")
    real = (np.random.default_rng(0).uniform(size=(50, 28, 28, 1)) < 0.25).astype("float32")

    sample_quality(seen, _BarDecoder(grey, collapse=False), real, 40, seed=0, batch_size=16, binary=True)
    samples = np.concatenate(seen.shown[:-1])  # the last call shows the real images
    assert samples.shape == (40, 28, 28, 1) and set(np.unique(samples)) == {0.0, 1.0}
    assert samples.mean() == pytest.approx(0.25, abs=0.01)  # bits drawn with the decoded probability

    seen.shown.clear()
    sample_quality(seen, _BarDecoder(grey, collapse=False), real, 40, seed=0, batch_size=16)
    np.testing.assert_array_equal(np.concatenate(seen.shown[:-1]), np.full((40, 28, 28, 1), 0.25, "float32"))


@pytest.mark.slow  # trains a tiny classifier once per module
def test_saved_real_statistics_give_the_same_scores_as_the_images(judge) -> None:
    from vaelab.evaluation import real_features

    x_real, y_real = _bars(600, np.random.default_rng(5))
    prototypes = np.stack([x_real[np.argmax(y_real == label)] for label in range(3)])
    statistics, _ = real_features.measure(judge, {"test": x_real})
    from_images = sample_quality(judge, _BarDecoder(prototypes, collapse=False), x_real, 300, seed=0)
    saved = sample_quality(judge, _BarDecoder(prototypes, collapse=False), x_real, 300, seed=0, real_statistics=statistics["test"][0])
    assert saved == from_images  # the same features, batch for batch: the same numbers to the last bit


def test_known_real_statistics_spare_the_real_images_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import vaelab.evaluation.classifier as classifier

    seen = _SeeingClassifier()
    monkeypatch.setattr(classifier, "features_and_probabilities", lambda model, x, batch_size=1000: tuple(model(x)))
    grey = np.full((3, 28, 28, 1), 0.25, dtype="float32")
    real = np.zeros((50, 28, 28, 1), "float32")
    # Real features all 0.25 against samples' 0.25: a distance of 0, whatever the real images are.
    scores = sample_quality(
        seen, _BarDecoder(grey, collapse=False), real, 40, seed=0, batch_size=16, real_statistics=(np.full(3, 0.25), np.zeros((3, 3)))
    )
    assert [len(images) for images in seen.shown] == [16, 16, 8]  # the samples only
    assert scores["sample_fid_classifier"] == pytest.approx(0.0, abs=1e-12)
