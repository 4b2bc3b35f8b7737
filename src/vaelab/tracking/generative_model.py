"""The trained VAE as a generative model: sample, encode, decode, reconstruct and interpolate, on numpy arrays.

One class, :class:`GenerativeVAE`, answers everywhere: in a notebook (``vaelab.load(...)``), behind
``vaelab generate`` and behind MLflow (``mlflow.pyfunc.load_model(...).predict(data, params={"mode": ...})``
and ``mlflow models serve``). MLflow logs this file as the model's code ("models from code") beside a
TensorFlow SavedModel with two endpoints, ``encode`` and ``decode`` (and ``prior``, the VampPrior's components,
for a model trained with one), so a logged model needs numpy,
TensorFlow and MLflow to load and serve, not vaelab: this file imports nothing else, on purpose.

The model's settings (``z_dim``, ``image_shape``, the data it was trained on, its prior) travel as the MLflow
model's ``model_config``. Every input error raises an ``MlflowException`` with INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

MODES = ("reconstruct", "encode", "decode", "sample", "interpolate")
METHODS = ("linear", "spherical")
SAVED_MODEL = "saved_model"  # the artifact key of the TensorFlow SavedModel
MAX_IMAGES = 10_000  # per request: a sample of n images or an interpolation of k steps
BATCH = 500  # images through the network at once, so a large request does not take all the memory

# The params schema (see vaelab.tracking.export): name -> (MLflow type, default).
PARAMS: dict[str, tuple[str, Any]] = {
    "mode": ("string", "reconstruct"),
    "n": ("long", 16),
    "seed": ("long", None),  # None: fresh noise on every call
    "temperature": ("double", 1.0),
    "steps": ("long", 8),
    "method": ("string", "linear"),
}

Array = np.ndarray
Encoder = Callable[[Array], tuple[Array, Array]]
Decoder = Callable[[Array], Array]


def _invalid(message: str) -> MlflowException:
    return MlflowException.invalid_parameter_value(message)


def posterior_pair(parts) -> tuple[Array, Array]:
    """The (mean, log_var) of an encoder's output, whatever array type it returns."""
    mean, log_var = parts
    return np.asarray(mean), np.asarray(log_var)


def _no_network(_: Array) -> Any:
    raise MlflowException("this GenerativeVAE has no network: load one with mlflow.pyfunc.load_model(...) or vaelab.load(...)")


class GenerativeVAE(PythonModel):
    """A VAE's encoder q(z|x) and decoder p(x|z) with its prior, on float32 numpy arrays.

    The prior is N(0, I), or for ``prior`` "vamp" the uniform mixture of the Gaussians ``prior_components``
    ``(means, log_vars)``, each (C, z_dim): the encoder's posteriors at the VampPrior's pseudo-images.

    Images are ``(N, H, W, C)`` (or ``(N, H, W)`` for one channel) with pixels in [0, 1]; latent vectors are
    ``(N, z_dim)``. Settings are attributes: ``z_dim``, ``image_shape``, ``dataset``, ``binarize``, ``prior``
    and the whole ``settings`` dict.
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        decoder: Decoder | None = None,
        settings: Mapping[str, Any] | None = None,
        prior_components: tuple[Array, Array] | None = None,
    ):
        self._encoder: Encoder = encoder or _no_network
        self._decoder: Decoder = decoder or _no_network
        self.settings: dict[str, Any] = dict(settings or {})
        self.prior_components = prior_components
        # Where it was loaded from, set by vaelab.load: the MLflow model URI (or file) and the run that logged it.
        self.model_uri: str | None = None
        self.run_id: str | None = None

    # --- MLflow's side: load the SavedModel, answer predict -----------------------------------------------------

    def load_context(self, context) -> None:
        import tensorflow as tf

        exported = tf.saved_model.load(context.artifacts[SAVED_MODEL])
        self._encoder = lambda images: posterior_pair(exported.encode(images))
        self._decoder = lambda z: np.asarray(exported.decode(z))
        self.settings = dict(context.model_config or {})
        if self.prior == "vamp":  # computed once: the pseudo-images do not change after training
            self.prior_components = posterior_pair(exported.prior())

    # The np.ndarray hint tells MLflow not to infer a schema from it (see the signature in vaelab.tracking.export).
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None):
        """``params["mode"]`` picks what ``model_input`` is and what comes back (see the README, "Use a trained model"):

        - ``reconstruct`` (default): images -> images decoded from their posterior means;
        - ``encode``: images -> ``{"mean": (N, z_dim), "log_var": (N, z_dim)}``;
        - ``decode``: latent vectors -> images;
        - ``sample``: input ignored -> ``n`` images decoded from the prior (``seed``, ``temperature``);
        - ``interpolate``: two images or two latent vectors -> ``steps`` images along the path between their
          codes (``method`` linear or spherical), the inputs' own decodings first and last.
        """
        params = {name: default for name, (_, default) in PARAMS.items()} | {k: v for k, v in (params or {}).items() if v is not None}
        mode = params["mode"]
        if mode == "reconstruct":
            return self.reconstruct(model_input)
        if mode == "encode":
            mean, log_var = self.encode(model_input)
            return {"mean": mean, "log_var": log_var}
        if mode == "decode":
            return self.decode(model_input)
        if mode == "sample":
            return self.sample(params["n"], seed=params["seed"], temperature=params["temperature"])
        if mode == "interpolate":
            first, second = self._pair(model_input)
            return self.interpolate(first, second, steps=params["steps"], method=params["method"])
        raise _invalid(f"mode must be one of {', '.join(MODES)}; received mode={mode!r}")

    # --- the generative model ---------------------------------------------------------------------------------

    @property
    def z_dim(self) -> int:
        return int(self.settings["z_dim"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.settings["image_shape"]
        return (int(height), int(width), int(channels))

    @property
    def dataset(self) -> str | None:
        return self.settings.get("dataset")

    @property
    def binarize(self) -> str | None:
        return self.settings.get("binarize")

    @property
    def prior(self) -> str:
        return self.settings.get("prior", "normal")

    def encode(self, images) -> tuple[Array, Array]:
        """The posterior q(z|x) = N(mean, exp(log_var)) of each image: two ``(N, z_dim)`` arrays."""
        images = self._images(images)
        parts = [self._encoder(images[i : i + BATCH]) for i in range(0, len(images), BATCH)] if len(images) else []
        if not parts:
            empty = np.zeros((0, self.z_dim), dtype="float32")
            return empty, empty.copy()
        return (np.concatenate([p[0] for p in parts]).astype("float32"), np.concatenate([p[1] for p in parts]).astype("float32"))

    def decode(self, z) -> Array:
        """The decoder's mean image (pixel probabilities for a Bernoulli decoder) for each latent vector."""
        z = self._latents(z)
        if not len(z):
            return np.zeros((0, *self.image_shape), dtype="float32")
        return np.concatenate([np.asarray(self._decoder(z[i : i + BATCH])) for i in range(0, len(z), BATCH)]).astype("float32")

    def reconstruct(self, images) -> Array:
        """Each image decoded from its posterior mean: deterministic, unlike a pass through the sampling layer."""
        return self.decode(self.encode(images)[0])

    def sample(self, n: int = 16, seed: int | None = None, temperature: float = 1.0) -> Array:
        """``n`` images decoded from the prior; the same seed gives the same images.

        N(0, I): z ~ N(0, temperature^2 I). VampPrior: for each image a uniformly drawn component c, then
        z ~ N(means[c], temperature^2 exp(log_vars[c])), so temperature 0 gives the components' means.
        """
        n, temperature = _count("n", n), float(temperature)
        if not (math.isfinite(temperature) and temperature >= 0):
            raise _invalid(f"temperature must be a finite number >= 0 (1 = the prior itself); received temperature={temperature!r}")
        rng = np.random.default_rng(seed)
        if self.prior == "normal":
            z = temperature * rng.standard_normal((n, self.z_dim))
        elif self.prior == "vamp" and self.prior_components is not None:
            means, log_vars = self.prior_components
            chosen = rng.integers(len(means), size=n)
            z = means[chosen] + temperature * np.exp(0.5 * log_vars[chosen]) * rng.standard_normal((n, self.z_dim))
        else:
            raise _invalid(
                f"this model's prior is {self.prior!r} and it carries no components to sample; sampling needs prior normal or vamp"
            )
        return self.decode(z.astype("float32"))

    def interpolate(self, first, second, steps: int = 8, method: str = "linear") -> Array:
        """``steps`` images between two images (through their posterior means) or two latent vectors."""
        path = self.interpolate_latents(self._code(first), self._code(second), steps, method)
        return self.decode(path)

    def interpolate_latents(self, start, end, steps: int = 8, method: str = "linear") -> Array:
        """``(steps, z_dim)`` points from ``start`` to ``end``, both included exactly.

        ``linear`` walks the straight line. ``spherical`` (slerp) walks the great circle between the two
        directions while the length changes linearly: under N(0, I) almost all mass lies near a sphere of radius
        sqrt(z_dim), which the straight line cuts through when z_dim is large.
        """
        steps = _count("steps", steps, least=2)
        if method not in METHODS:
            raise _invalid(f"method must be one of {', '.join(METHODS)}; received method={method!r}")
        start, end = (np.asarray(v, dtype="float64").reshape(-1) for v in (start, end))
        t = np.linspace(0.0, 1.0, steps)[:, np.newaxis]
        path = (1 - t) * start + t * end if method == "linear" else _slerp(start, end, t)
        path[0], path[-1] = start, end  # exact endpoints, whatever the rounding inside
        return path.astype("float32")

    # --- input checks -----------------------------------------------------------------------------------------

    def _images(self, images) -> Array:
        array = _as_float_array(images, "images")
        shape = self.image_shape
        if array.ndim == 3 and shape[2] == 1 and array.shape[1:] == shape[:2]:
            array = array[..., np.newaxis]
        if array.ndim == 2 and array.shape[1] == math.prod(shape):  # flat rows, as JSON clients often send
            array = array.reshape(-1, *shape)
        if array.ndim != 4 or array.shape[1:] != shape:
            raise _invalid(f"images must have shape (N, {', '.join(map(str, shape))}) for this model; received shape {array.shape}")
        if array.size and not (np.all(np.isfinite(array)) and array.min() >= 0 and array.max() <= 1):
            raise _invalid(
                f"image pixels must be in [0, 1] (uint8 images divided by 255); received values from {array.min():g} to {array.max():g}"
            )
        return array

    def _latents(self, z) -> Array:
        array = _as_float_array(z, "latent vectors")
        if array.ndim == 1 and array.shape[0] == self.z_dim:
            array = array[np.newaxis]
        if array.ndim != 2 or array.shape[1] != self.z_dim:
            raise _invalid(
                f"latent vectors must have shape (N, {self.z_dim}) for this model (z_dim={self.z_dim}); received shape {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise _invalid("latent vectors must be finite numbers; received NaN or infinity")
        return array

    def _code(self, item) -> Array:
        """A latent vector as it is, or one image's posterior mean."""
        array = _as_float_array(item, "an interpolation end")
        if array.size == self.z_dim:
            return self._latents(array.reshape(1, -1))[0]
        images = self._images(array if array.ndim == 4 else array[np.newaxis])
        if len(images) != 1:
            raise _invalid(f"each interpolation end must be one image or one latent vector; received {len(images)} images")
        return self.encode(images)[0][0]

    def _pair(self, model_input) -> tuple[Array, Array]:
        array = _as_float_array(model_input, "interpolate's input")
        if array.ndim == 0 or len(array) != 2:
            raise _invalid(f"interpolate takes two images or two latent vectors; received shape {array.shape}")
        return array[0], array[1]


def _as_float_array(data, what: str) -> Array:
    if hasattr(data, "to_numpy"):  # a pandas DataFrame: one row per item
        data = data.to_numpy()
    if isinstance(data, Mapping) and len(data) == 1:  # {"inputs": {"images": [...]}} from the scoring server
        data = next(iter(data.values()))
    try:
        array = np.asarray(data, dtype="float32")
    except (TypeError, ValueError):
        raise _invalid(f"{what} must be an array of numbers; received {type(data).__name__}") from None
    return array


def _count(name: str, value, least: int = 1) -> int:
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):  # "many", None: from Python callers; MLflow's schema stops them before predict
        whole = False
    if not whole or not least <= int(value) <= MAX_IMAGES:
        raise _invalid(f"{name} must be a whole number from {least} to {MAX_IMAGES}; received {name}={value!r}")
    return int(value)


def _slerp(start: Array, end: Array, t: Array) -> Array:
    start_norm, end_norm = np.linalg.norm(start), np.linalg.norm(end)
    if start_norm == 0 or end_norm == 0:
        return (1 - t) * start + t * end  # no direction to turn from: the straight line
    cos_angle = np.clip(np.dot(start, end) / (start_norm * end_norm), -1.0, 1.0)
    angle = np.arccos(cos_angle)
    if np.sin(angle) < 1e-6:  # parallel (or opposite) directions: the great circle is not unique
        return (1 - t) * start + t * end
    directions = (np.sin((1 - t) * angle) * start / start_norm + np.sin(t * angle) * end / end_norm) / np.sin(angle)
    return directions * ((1 - t) * start_norm + t * end_norm)


# MLflow runs this file on its own (not as part of the vaelab package) to build the logged model; importing
# it from vaelab only defines the class.
if not __package__:
    mlflow.models.set_model(GenerativeVAE())
