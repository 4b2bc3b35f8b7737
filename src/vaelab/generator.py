"""The one door to a trained model: ``vaelab.load(reference)`` -> a :class:`GenerativeVAE` on numpy arrays.

A reference is anything a user holds of a trained model: a ``.keras`` file the train stage wrote
(``models/vae.keras``), a run id, ``runs:/<id>/model``, ``models:/<name>@<alias>`` or ``models:/<name>/<version>``,
or a local MLflow model folder. None means the model registry's ``best`` of the project's experiment. The
object is the same class whatever the source, the one MLflow serves (:mod:`vaelab.tracking.generative_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from vaelab.errors import DataError, VaelabError, first_line

if TYPE_CHECKING:
    from vaelab.config.schema import Config
    from vaelab.tracking.generative_model import GenerativeVAE


class TestImages(NamedTuple):
    images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    labels: np.ndarray  # (N,) class indices into class_names (all 0 for unlabelled data)
    class_names: tuple[str, ...]


def load(reference: str | Path | None = None, params: str | Path = "params.yaml") -> GenerativeVAE:
    """The trained model at ``reference`` (see the module doc); ``params`` names the experiment when it is None."""
    if reference is None:
        reference = best_model_uri(_config(params))
    text = str(reference)
    from vaelab.tracking.loading import is_mlflow_reference, load_logged_model

    if is_mlflow_reference(text) or Path(text, "MLmodel").is_file():
        return load_logged_model(text)
    path = Path(text)
    if path.suffix == ".keras":
        return load_keras_file(path)
    raise VaelabError(f"{text}: no such .keras file, MLflow model folder, run id, runs:/ or models:/ URI")


def best_model_uri(config: Config) -> str:
    """``models:/<registered name>@best`` for the experiment and data of ``config``."""
    from vaelab.tracking.registry import BEST_ALIAS, registered_model_name

    name = registered_model_name(config.base.experiment, config.data.dataset, config.data.binarize)
    return f"models:/{name}@{BEST_ALIAS}"


def load_keras_file(path: Path) -> GenerativeVAE:
    """A model the train stage saved (``paths.model``), wrapped in the same class MLflow serves."""
    if not path.is_file():
        raise DataError(f"{path}: no such model file; run the train stage (dvc repro train) or give a run id or models:/ URI")
    import keras

    import vaelab.model  # noqa: F401 - registers the custom layers that load_model looks up
    from vaelab.evaluation import passes
    from vaelab.tracking.export import model_settings
    from vaelab.tracking.generative_model import GenerativeVAE, posterior_pair

    try:
        model = keras.models.load_model(path, safe_mode=True)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot load the model ({first_line(err)})") from None
    encode, decode = passes.encode(model), passes.decode(model)
    components = model.prior_components()
    generator = GenerativeVAE(
        encoder=lambda images: posterior_pair(encode(images)),
        decoder=lambda z: np.asarray(decode(z)),
        settings=model_settings(model, dataset=None, binarize=None),
        prior_components=None if components is None else posterior_pair(components),
    )
    generator.model_uri = str(path)
    return generator


def test_images(processed: str | Path = "data/processed") -> TestImages:
    """The test split the preprocess stage wrote (``paths.processed``)."""
    from vaelab.data.processed import load_splits

    if not Path(processed).is_dir():
        raise DataError(f"{processed}: no processed data; run the preprocess stage first (dvc repro preprocess)")
    splits = load_splits(processed)
    return TestImages(np.asarray(splits.x_test[:], dtype="float32"), np.asarray(splits.y_test), tuple(splits.class_names))


def _config(params: str | Path) -> Config:
    from vaelab.config.load import load_config
    from vaelab.config.schema import Config

    return load_config(params) if Path(params).is_file() else Config()
