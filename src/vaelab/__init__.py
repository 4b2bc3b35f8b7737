"""vaelab: the convolutional VAE of "Generative Deep Learning" (chapter 3) as a tracked, tunable pipeline.

Importing the package is cheap on purpose: TensorFlow, MLflow and Optuna load only in the modules
that need them, so `dvc status` and `--help` stay fast.
"""

__version__ = "0.1.0"


def load(reference=None, params="params.yaml"):
    """A trained model as a generative model: ``vae = vaelab.load("models:/vaelab-mnist@best")``, then
    ``vae.sample(16, seed=0)``, ``vae.encode(images)``, ``vae.decode(z)``, ``vae.reconstruct(images)``,
    ``vae.interpolate(a, b, steps=8)``. See :mod:`vaelab.generator` for what ``reference`` may be."""
    from vaelab.generator import load as load_model

    return load_model(reference, params)


def test_images(processed="data/processed"):
    """``(images, labels, class_names)`` of the test split in ``processed`` (the preprocess stage's output)."""
    from vaelab.generator import test_images as read

    return read(processed)
