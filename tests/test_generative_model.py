"""The logged model is the whole generative model: every mode, in numpy, through MLflow's pyfunc in a process that
never imports vaelab, and the checks that give a wrong mode, shape or z_dim one clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from vaelab.tracking.generative_model import GenerativeVAE

Z_DIM = 3
SHAPE = (4, 4, 1)


def linear_vae() -> GenerativeVAE:
    """A VAE whose encoder and decoder are fixed linear maps, so every answer can be worked out by hand:
    mean = the first Z_DIM pixels, log_var = -mean; decode(z) puts z in the first Z_DIM pixels, zeros elsewhere."""

    def encoder(images):
        flat = images.reshape(len(images), -1)[:, :Z_DIM]
        return flat, -flat

    def decoder(z):
        images = np.zeros((len(z), 16), dtype="float32")
        images[:, :Z_DIM] = z
        return images.reshape(len(z), *SHAPE)

    return GenerativeVAE(encoder, decoder, {"z_dim": Z_DIM, "image_shape": list(SHAPE), "dataset": "toy", "prior": "normal"})


def test_linear_interpolation_is_exact_at_hand_worked_points() -> None:
    path = linear_vae().interpolate_latents([0.0, 0.0, 0.0], [2.0, 4.0, -1.0], steps=3, method="linear")
    np.testing.assert_array_equal(path, np.array([[0, 0, 0], [1, 2, -0.5], [2, 4, -1]], dtype="float32"))


def test_spherical_interpolation_turns_along_the_circle_and_scales_the_length_linearly() -> None:
    # From (1, 0, 0) to (0, 2, 0): a quarter turn; halfway the direction is 45 degrees and the length 1.5.
    path = linear_vae().interpolate_latents([1.0, 0.0, 0.0], [0.0, 2.0, 0.0], steps=3, method="spherical")
    half = 1.5 / np.sqrt(2.0)
    np.testing.assert_allclose(path[1], [half, half, 0.0], atol=1e-6)
    np.testing.assert_array_equal(path[[0, 2]], np.array([[1, 0, 0], [0, 2, 0]], dtype="float32"))
    # Opposite directions have no unique great circle: the straight line, through the origin.
    opposite = linear_vae().interpolate_latents([1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], steps=3, method="spherical")
    np.testing.assert_allclose(opposite[1], [0.0, 0.0, 0.0], atol=1e-7)


def test_interpolating_images_goes_between_their_posterior_means() -> None:
    vae = linear_vae()
    first, second = np.full(SHAPE, 0.2, dtype="float32"), np.full(SHAPE, 0.6, dtype="float32")
    images = vae.interpolate(first, second, steps=5)
    assert images.shape == (5, *SHAPE)
    # The codes are the first three pixels (0.2 ... 0.6), decoded back into the first three pixels.
    np.testing.assert_allclose(images.reshape(5, -1)[:, 0], [0.2, 0.3, 0.4, 0.5, 0.6], atol=1e-6)
    assert not images.reshape(5, -1)[:, Z_DIM:].any()


def test_samples_are_the_seeded_prior_scaled_by_the_temperature() -> None:
    vae = linear_vae()
    images = vae.sample(5, seed=3, temperature=0.5)
    expected = 0.5 * np.random.default_rng(3).standard_normal((5, Z_DIM))
    np.testing.assert_allclose(images.reshape(5, -1)[:, :Z_DIM], expected, rtol=1e-6)
    np.testing.assert_array_equal(vae.sample(5, seed=3, temperature=0.5), images)
    assert not np.array_equal(vae.sample(5, seed=4, temperature=0.5), images)
    assert not vae.sample(2, seed=3, temperature=0.0).any()  # temperature 0: the prior's mean, z = 0


def test_a_vamp_models_samples_draw_a_component_then_its_gaussian() -> None:
    # Two components in 3-D, at (1, 1, 1) with variance 4 and at (-5, 0, 0) with variance 1; the linear decoder
    # shows z itself. Seeded: the component indices first, then the standard-normal draws, scaled by temperature.
    means = np.array([[1.0, 1.0, 1.0], [-5.0, 0.0, 0.0]], dtype="float32")
    log_vars = np.array([[np.log(4.0)] * 3, [0.0] * 3], dtype="float32")
    vae = linear_vae()
    vae.settings["prior"] = "vamp"
    vae.prior_components = (means, log_vars)
    rng = np.random.default_rng(6)
    chosen = rng.integers(2, size=6)
    expected = means[chosen] + 0.5 * np.exp(0.5 * log_vars[chosen]) * rng.standard_normal((6, Z_DIM))
    assert set(chosen) == {0, 1}  # both components are drawn at this seed
    np.testing.assert_allclose(vae.sample(6, seed=6, temperature=0.5).reshape(6, -1)[:, :Z_DIM], expected, rtol=1e-6)
    np.testing.assert_array_equal(vae.sample(6, seed=6, temperature=0.0).reshape(6, -1)[:, :Z_DIM], means[chosen])


def test_a_prior_without_components_cannot_be_sampled() -> None:
    vae = linear_vae()
    vae.settings["prior"] = "vamp"
    with pytest.raises(MlflowException, match="this model's prior is 'vamp' and it carries no components to sample"):
        vae.sample(2, seed=0)


def test_reconstruct_decodes_the_posterior_mean_and_encode_returns_both_halves() -> None:
    vae = linear_vae()
    images = np.random.default_rng(0).random((6, *SHAPE), dtype=np.float32)
    mean, log_var = vae.encode(images)
    np.testing.assert_array_equal(mean, images.reshape(6, -1)[:, :Z_DIM])
    np.testing.assert_array_equal(log_var, -mean)
    np.testing.assert_array_equal(vae.reconstruct(images), vae.decode(mean))
    # Flat rows and (N, H, W) for one channel are the same images.
    np.testing.assert_array_equal(vae.encode(images.reshape(6, 16))[0], mean)
    np.testing.assert_array_equal(vae.encode(images[..., 0])[0], mean)


def test_predict_dispatches_on_mode() -> None:
    vae = linear_vae()
    images = np.random.default_rng(1).random((2, *SHAPE), dtype=np.float32)
    encoded = vae.predict(None, images, {"mode": "encode"})
    assert set(encoded) == {"mean", "log_var"}
    np.testing.assert_array_equal(vae.predict(None, images), vae.reconstruct(images))  # reconstruct is the default
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], dtype="float32")
    np.testing.assert_array_equal(vae.predict(None, z, {"mode": "decode"}), vae.decode(z))
    np.testing.assert_array_equal(vae.predict(None, z, {"mode": "sample", "n": 4, "seed": 9}), vae.sample(4, seed=9))
    path = vae.predict(None, z, {"mode": "interpolate", "steps": 4, "method": "spherical"})
    np.testing.assert_array_equal(path[[0, -1]], vae.decode(z))


@pytest.mark.parametrize(
    ("data", "params", "message"),
    [
        (None, {"mode": "generate"}, "mode must be one of reconstruct, encode, decode, sample, interpolate; received mode='generate'"),
        (np.zeros((2, 5, 5, 1)), {}, "images must have shape (N, 4, 4, 1) for this model; received shape (2, 5, 5, 1)"),
        (np.full((1, 4, 4, 1), 255.0), {"mode": "encode"}, "image pixels must be in [0, 1] (uint8 images divided by 255)"),
        (np.zeros((2, 2)), {"mode": "decode"}, "latent vectors must have shape (N, 3) for this model (z_dim=3); received shape (2, 2)"),
        (None, {"mode": "sample", "n": 0}, "n must be a whole number from 1 to 10000; received n=0"),
        (None, {"mode": "sample", "n": "many"}, "n must be a whole number from 1 to 10000; received n='many'"),
        (None, {"mode": "sample", "n": 2.5}, "n must be a whole number from 1 to 10000; received n=2.5"),
        (None, {"mode": "sample", "temperature": -1.0}, "temperature must be a finite number >= 0"),
        (np.zeros((3, 3)), {"mode": "interpolate"}, "interpolate takes two images or two latent vectors; received shape (3, 3)"),
        (np.zeros((2, 3)), {"mode": "interpolate", "steps": 1}, "steps must be a whole number from 2 to 10000; received steps=1"),
        (np.zeros((2, 3)), {"mode": "interpolate", "method": "cubic"}, "method must be one of linear, spherical; received method='cubic'"),
        ([["a", "b"]], {"mode": "decode"}, "latent vectors must be an array of numbers; received list"),
    ],
)
def test_bad_input_is_one_clear_mlflow_error(data, params: dict, message: str) -> None:
    with pytest.raises(MlflowException) as caught:
        linear_vae().predict(None, data, params)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in caught.value.message


# --- the real logged model --------------------------------------------------------------------------------------


def _in_new_process(script: str, logged: dict[str, str], *args: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged["store"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=logged["folder"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Runs in a fresh interpreter that never imports vaelab: the served model must stand on its own.
EVERY_MODE = """
import json, sys
import mlflow, numpy as np
from mlflow.exceptions import MlflowException

model = mlflow.pyfunc.load_model(sys.argv[1])
x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
out = {}
rec = model.predict(x)
out["reconstruct"] = [list(rec.shape), str(rec.dtype), float(rec.min()) >= 0, float(rec.max()) <= 1]
enc = model.predict(x, params={"mode": "encode"})
out["encode"] = [sorted(enc), list(enc["mean"].shape), list(enc["log_var"].shape), str(enc["mean"].dtype)]
dec = model.predict(enc["mean"], params={"mode": "decode"})
out["decode_of_mean_vs_reconstruct"] = float(np.abs(dec - rec).max())
s0, s0_again, s1 = (model.predict(None, params={"mode": "sample", "n": 5, "seed": seed}) for seed in (0, 0, 1))
out["sample"] = [list(s0.shape), bool(np.array_equal(s0, s0_again)), bool(np.array_equal(s0, s1))]
path = model.predict(x[:2], params={"mode": "interpolate", "steps": 6, "method": "spherical"})
ends = model.predict(enc["mean"][:2], params={"mode": "decode"})
out["interpolate"] = [list(path.shape), float(np.abs(path[[0, -1]] - ends).max())]
for params, data in (({"mode": "morph"}, x), ({"mode": "decode"}, np.zeros((1, 5), "float32"))):
    try:
        model.predict(data, params=params)
        out.setdefault("errors", []).append(None)
    except MlflowException as err:
        out.setdefault("errors", []).append(err.message)
out["vaelab_imported"] = any(name.startswith("vaelab") for name in sys.modules)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_mode_through_mlflow_pyfunc_in_a_process_without_vaelab(logged: dict[str, str]) -> None:
    out = _in_new_process(EVERY_MODE, logged, logged["model_uri"])
    assert out["reconstruct"] == [[3, 28, 28, 1], "float32", True, True]
    assert out["encode"] == [["log_var", "mean"], [3, 2], [3, 2], "float32"]
    assert out["decode_of_mean_vs_reconstruct"] < 1e-6
    assert out["sample"] == [[5, 28, 28, 1], True, False]
    assert out["interpolate"][0] == [6, 28, 28, 1]
    assert out["interpolate"][1] < 1e-6  # the path starts and ends at the inputs' codes
    assert out["errors"][0].startswith("mode must be one of reconstruct, encode, decode, sample, interpolate; received mode='morph'")
    assert out["errors"][1].startswith("latent vectors must have shape (N, 2) for this model (z_dim=2); received shape (1, 5)")
    assert out["vaelab_imported"] is False


@pytest.mark.slow
def test_the_signature_carries_the_params_schema(logged: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["store"])
    info = mlflow.models.get_model_info(logged["model_uri"])
    params = {spec.name: (spec.dtype.name, spec.default) for spec in info.signature.params.params}
    assert params == {
        "mode": ("string", "reconstruct"),
        "n": ("long", 16),
        "seed": ("long", None),
        "temperature": ("double", 1.0),
        "steps": ("long", 8),
        "method": ("string", "linear"),
    }


@pytest.mark.slow
def test_a_model_logged_before_the_generative_format_still_loads_and_reconstructs(logged: dict[str, str]) -> None:
    script = (
        "import json, sys, mlflow, numpy as np\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "out = np.asarray(model.predict(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)))\n"
        "print(json.dumps(list(out.shape)))\n"
    )
    assert _in_new_process(script, logged, f"runs:/{logged['old_run_id']}/model") == [2, 28, 28, 1]


@pytest.mark.slow
def test_vaelab_load_gives_the_served_object_with_its_settings(logged: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import vaelab
    from vaelab.errors import VaelabError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["store"])
    vae = vaelab.load(logged["run_id"])
    assert (vae.z_dim, vae.image_shape, vae.dataset, vae.binarize, vae.prior) == (2, (28, 28, 1), "mnist", "none", "normal")
    assert vae.run_id == logged["run_id"]
    assert vae.model_uri == f"runs:/{logged['run_id']}/model"
    np.testing.assert_array_equal(vae.sample(3, seed=5), vaelab.load(logged["model_uri"]).sample(3, seed=5))
    with pytest.raises(VaelabError, match=r"logged before vaelab's generative format and can only reconstruct"):
        vaelab.load(logged["old_run_id"])


VAMP_SAMPLES = """
import json, sys
import mlflow, numpy as np

model = mlflow.pyfunc.load_model(sys.argv[1])
config = model.unwrap_python_model().settings
a, a_again, b = (model.predict(None, params={"mode": "sample", "n": 6, "seed": seed}) for seed in (4, 4, 5))
out = {
    "shape": list(a.shape),
    "finite": bool(np.all(np.isfinite(a))),
    "same_seed": bool(np.array_equal(a, a_again)),
    "other_seed": bool(np.array_equal(a, b)),
    "prior": [config["prior"], config["vamp_components"]],
    "images": a.tolist(),
    "vaelab_imported": any(name.startswith("vaelab") for name in sys.modules),
}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_vamp_model_samples_its_mixture_through_mlflow_pyfunc_without_vaelab(logged: dict[str, str]) -> None:
    import keras

    from vaelab.evaluation.metrics import prior_points

    out = _in_new_process(VAMP_SAMPLES, logged, logged["vamp_model_uri"])
    assert out["shape"] == [6, 28, 28, 1] and out["finite"] and out["same_seed"] and not out["other_seed"]
    assert out["prior"] == ["vamp", 3] and out["vaelab_imported"] is False
    # The served samples are the Keras model's decodings of the evaluate stage's prior points at the same seed:
    # a component drawn for each, then its Gaussian, from the SavedModel's ``prior`` endpoint.
    model = keras.models.load_model(logged["vamp_keras_file"], safe_mode=True)
    z = prior_points(model, 6, seed=4)
    np.testing.assert_allclose(np.asarray(out["images"]), np.asarray(model.decoder(z)), atol=1e-6)
    # ...and not the decodings of N(0, I) draws: the mixture is what was sampled.
    normal = np.random.default_rng(4).standard_normal((6, 2)).astype("float32")
    assert np.abs(np.asarray(out["images"]) - np.asarray(model.decoder(normal))).max() > 1e-3


@pytest.mark.slow
def test_vaelab_load_of_a_vamp_keras_file_samples_like_the_logged_model(logged: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import vaelab

    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["store"])
    from_file, logged_model = vaelab.load(logged["vamp_keras_file"]), vaelab.load(logged["vamp_model_uri"])
    assert (from_file.prior, logged_model.prior) == ("vamp", "vamp")
    np.testing.assert_allclose(from_file.sample(4, seed=2), logged_model.sample(4, seed=2), atol=1e-6)
