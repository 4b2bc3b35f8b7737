"""The trained model as an MLflow model: the whole generative model, servable without vaelab.

What one logged model holds (``<run>/model``, a pyfunc "model from code"):

- ``python_model.py``: a copy of :mod:`vaelab.tracking.generative_model`, whose :class:`GenerativeVAE` answers
  ``predict(data, params={"mode": ...})`` with reconstruct, encode, decode, sample or interpolate;
- ``artifacts/saved_model/``: a TensorFlow SavedModel with the endpoints ``encode`` (images -> mean, log_var)
  and ``decode`` (latent vectors -> images), and for a VampPrior model ``prior`` (no input -> the means and
  log-variances of its C components, the pseudo-images encoded), exported from the Keras model, so loading
  needs neither vaelab's custom layers nor Keras;
- ``model_config``: the settings the code needs and a user wants to read (z_dim, image shape, data, prior, and
  for a VampPrior its number of components);
- a signature with a params schema and no input schema: one model takes images (most modes) or latent vectors
  (decode), and MLflow's tensor specs cannot be optional, so the model code checks shapes itself.

Models logged before this format (the Keras flavour's SavedModel of the whole VAE) still load with
``mlflow.pyfunc.load_model`` and reconstruct; they cannot generate.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ParamSchema, ParamSpec

from vaelab.tracking import generative_model

if TYPE_CHECKING:
    from vaelab.model import VAE

MODEL_NAME = "model"
FORMAT_VERSION = 2  # 1: the Keras flavour's reconstruct-only SavedModel; 2: GenerativeVAE


def model_settings(model: VAE, dataset: str | None, binarize: str | None) -> dict[str, Any]:
    """What the logged model carries about itself (its ``model_config``)."""
    mu = model.encoder.outputs[0]
    settings = {
        "format_version": FORMAT_VERSION,
        "z_dim": int(mu.shape[-1]),
        "image_shape": [int(side) for side in model.encoder.inputs[0].shape[1:]],
        "dataset": dataset,
        "binarize": binarize,
        "reconstruction": model.reconstruction,
        "prior": model.prior,
    }
    if model.prior == "vamp":
        settings["vamp_components"] = model.vamp_components
    return settings


def log_generative_model(model: VAE, settings: dict[str, Any]) -> str:
    """Log ``model`` as a :class:`~vaelab.tracking.generative_model.GenerativeVAE` (see the module doc); return its URI."""
    with tempfile.TemporaryDirectory(prefix="vaelab-export-") as scratch:
        saved_model = Path(scratch) / generative_model.SAVED_MODEL
        export_saved_model(model, saved_model)
        with warnings.catch_warnings():
            # MLflow asks for an input example; it would run the model once more at logging only to check it.
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=generative_model.__file__,
                artifacts={generative_model.SAVED_MODEL: str(saved_model)},
                model_config=settings,
                signature=ModelSignature(params=params_schema()),
                # Listing the requirements skips MLflow's inference, which reloads the model in a subprocess.
                pip_requirements=serving_requirements(),
            )
    return info.model_uri


def export_saved_model(model: VAE, path: Path) -> None:
    """The encoder and decoder as a SavedModel with endpoints ``encode`` and ``decode`` (any batch size)."""
    import keras
    import tensorflow as tf

    image_shape = tuple(model.encoder.inputs[0].shape[1:])
    z_dim = model.encoder.outputs[0].shape[-1]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "encode", lambda images: model.encoder(images, training=False), input_signature=[tf.TensorSpec((None, *image_shape), tf.float32)]
    )
    archive.add_endpoint("decode", lambda z: model.decoder(z, training=False), input_signature=[tf.TensorSpec((None, z_dim), tf.float32)])
    if model.prior_components() is not None:
        archive.add_endpoint("prior", lambda: model.prior_components(training=False), input_signature=[])
    # The exporter prints a page of endpoint details even when told not to; keep it out of the training output.
    with contextlib.redirect_stdout(io.StringIO()):
        archive.write_out(str(path), verbose=False)


def params_schema() -> ParamSchema:
    return ParamSchema([ParamSpec(name, dtype, default) for name, (dtype, default) in generative_model.PARAMS.items()])


def serving_requirements() -> list[str]:
    """What serving the model needs: MLflow, numpy and TensorFlow at this environment's versions."""
    from importlib.metadata import PackageNotFoundError, version

    requirements = [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]
    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            return [*requirements, f"{distribution}=={version(distribution)}"]
        except PackageNotFoundError:
            continue
    return requirements
