"""The trained model as an MLflow model: a TensorFlow SavedModel whose pyfunc returns reconstructions."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import keras
import mlflow
import numpy as np

if TYPE_CHECKING:
    from vaelab.model import VAE

MODEL_NAME = "model"


def log_keras_model(model: VAE, example_images: np.ndarray) -> str:
    """Log ``model`` as an MLflow model whose pyfunc ``predict(images)`` returns reconstructions; return its URI.

    The model is exported as a TensorFlow SavedModel, so serving it needs neither vaelab nor its custom
    layers. The signature (float32 images of the example's shape, any batch size) comes from the examples.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    examples = np.asarray(example_images, dtype="float32")
    outputs = keras.ops.convert_to_numpy(model(examples, training=False))
    signature = infer_signature(examples, outputs)
    # Keras' exporter prints a page of endpoint details to stdout; keep it out of the training output.
    with contextlib.redirect_stdout(io.StringIO()):
        info = mlflow.keras.log_model(
            model,
            name=MODEL_NAME,
            save_exported_model=True,
            signature=signature,
            # Listing the requirements skips MLflow's inference, which reloads the model in a subprocess.
            pip_requirements=_serving_requirements(),
        )
    return info.model_uri


def _serving_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}"]
    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            return [*requirements, f"{distribution}=={version(distribution)}"]
        except PackageNotFoundError:
            continue
    return requirements
