"""The VAE's architecture, its shape checks, the sampling layer and the saved-model round trip."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from vaelab.config.schema import TrainSection
from vaelab.errors import ConfigError
from vaelab.model import DECODER_OUTPUT, VAE, Sampling, build_vae

# A small network for tests that run the model rather than count its parameters.
TINY = TrainSection(
    z_dim=2,
    encoder_filters=(4, 8),
    encoder_kernels=(3, 3),
    encoder_strides=(2, 2),
    decoder_filters=(8, 1),
    decoder_kernels=(3, 3),
    decoder_strides=(2, 2),
)


def conv_params(kernel: int, channels_in: int, filters: int) -> int:
    return kernel * kernel * channels_in * filters + filters  # Conv2D and Conv2DTranspose alike


def dense_params(inputs: int, units: int) -> int:
    return inputs * units + units


def test_the_chapters_mnist_model_has_the_books_shapes_and_parameter_counts():
    vae = build_vae((28, 28, 1), TrainSection(), seed=0)  # defaults = the chapter's settings

    mu, log_var = vae.encoder(np.zeros((5, 28, 28, 1), dtype="float32"))
    assert mu.shape == (5, 2) and log_var.shape == (5, 2)
    assert vae.decoder(np.zeros((5, 2), dtype="float32")).shape == (5, 28, 28, 1)

    # encoder: 1 -> 32 -> 64 -> 64 -> 64 channels, strides 1,2,2,1 leave 7x7x64 = 3136 features
    convs = conv_params(3, 1, 32) + conv_params(3, 32, 64) + 2 * conv_params(3, 64, 64)
    assert vae.encoder.count_params() == convs + 2 * dense_params(7 * 7 * 64, 2)
    assert vae.encoder.count_params() == 105_220  # the book's model.summary()
    # decoder: z -> 3136 -> 7x7x64 -> 64 -> 64 -> 32 -> 1 channels
    transposed = 2 * conv_params(3, 64, 64) + conv_params(3, 64, 32) + conv_params(3, 32, 1)
    assert vae.decoder.count_params() == dense_params(2, 7 * 7 * 64) + transposed
    assert vae.decoder.count_params() == 102_017


def test_a_64x64_rgb_model_with_batch_norm():
    train = TrainSection(
        z_dim=200,
        encoder_strides=(2, 2, 2, 2),
        decoder_filters=(64, 64, 32, 3),
        decoder_strides=(2, 2, 2, 2),
        use_batch_norm=True,
        dropout_rate=0.25,
    )
    vae = build_vae((64, 64, 3), train, seed=0)

    mu, _ = vae.encoder(np.zeros((2, 64, 64, 3), dtype="float32"))
    assert mu.shape == (2, 200)
    assert vae.decoder(np.zeros((2, 200), dtype="float32")).shape == (2, 64, 64, 3)

    block = ["Conv2D", "BatchNormalization", "LeakyReLU", "Dropout"]
    encoder_layers = [type(layer).__name__ for layer in vae.encoder.layers]
    assert encoder_layers == ["InputLayer", *block * 4, "Flatten", "Dense", "Dense"]
    decoder_layers = [type(layer).__name__ for layer in vae.decoder.layers]
    transposed_block = ["Conv2DTranspose", *block[1:]]
    assert decoder_layers == ["InputLayer", "Dense", "Reshape", *transposed_block * 3, "Conv2DTranspose", "Activation"]
    # The last convolution outputs the Bernoulli logits; a layer of its own applies the sigmoid.
    assert vae.decoder.layers[-2].activation.__name__ == "linear"
    assert (vae.decoder.layers[-1].name, vae.decoder.layers[-1].activation.__name__) == (DECODER_OUTPUT, "sigmoid")

    # batch norm holds 4 numbers per channel (gamma, beta, moving mean and variance); dropout none
    def batch_norm(channels: int) -> int:
        return 4 * channels

    encoder_convs = conv_params(3, 3, 32) + conv_params(3, 32, 64) + 2 * conv_params(3, 64, 64)
    encoder_norms = batch_norm(32) + 3 * batch_norm(64)
    assert vae.encoder.count_params() == encoder_convs + encoder_norms + 2 * dense_params(4 * 4 * 64, 200)
    decoder_convs = 2 * conv_params(3, 64, 64) + conv_params(3, 64, 32) + conv_params(3, 32, 3)
    decoder_norms = 2 * batch_norm(64) + batch_norm(32)  # none after the sigmoid output
    assert vae.decoder.count_params() == dense_params(200, 4 * 4 * 64) + decoder_convs + decoder_norms


def test_strides_that_do_not_divide_the_image_are_a_config_error():
    with pytest.raises(ConfigError) as caught:
        build_vae((30, 30, 1), TrainSection(), seed=0)
    assert str(caught.value) == (
        "train.encoder_strides (1, 2, 2, 1) reduce 30x30 by 4, which does not divide both sides; use strides whose product divides 30"
    )


def test_decoder_strides_must_undo_the_encoders():
    with pytest.raises(ConfigError) as caught:
        build_vae((28, 28, 1), TrainSection(decoder_strides=(1, 2, 1, 1)), seed=0)
    assert str(caught.value) == (
        "train.decoder_strides (1, 2, 1, 1) enlarge by 2 but train.encoder_strides (1, 2, 2, 1) reduce by 4; make their products equal"
    )


def test_the_decoder_must_output_the_images_channels():
    with pytest.raises(ConfigError) as caught:
        build_vae((28, 28, 3), TrainSection(), seed=0)
    assert str(caught.value) == "train.decoder_filters ends with 1 but the images have 3 channels; set its last entry to 3"


def test_sampling_draws_from_the_given_gaussian():
    sampling = Sampling(seed=1)
    mu = np.full((20_000, 2), 3.0, dtype="float32")
    log_var = np.full((20_000, 2), math.log(4.0), dtype="float32")  # sigma = 2
    z = np.asarray(sampling([mu, log_var]))
    np.testing.assert_allclose(z.mean(axis=0), [3.0, 3.0], atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), [2.0, 2.0], atol=0.05)


def test_fit_logs_the_three_loss_terms_and_loss_is_their_weighted_sum():
    keras.utils.set_random_seed(0)
    vae = build_vae((8, 8, 1), TINY.model_copy(update={"r_loss_factor": 500.0}), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype="float32")

    history = vae.fit(x, batch_size=16, epochs=1, validation_data=(x,), verbose=0).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss", "val_loss", "val_reconstruction_loss", "val_kl_loss"}
    scores = vae.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(500.0 * scores["reconstruction_loss"] + scores["kl_loss"], rel=1e-5)


def test_a_saved_model_reloads_in_safe_mode_with_identical_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    vae = build_vae((8, 8, 1), TINY.model_copy(update={"reconstruction": "bce", "r_loss_factor": 7.0}), seed=3)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype="float32")
    z = np.random.default_rng(1).normal(size=(4, 2)).astype("float32")
    vae(x)  # advance the sampling generator so its saved position is not the initial one

    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras", safe_mode=True)

    assert isinstance(loaded, VAE)
    assert (loaded.r_loss_factor, loaded.reconstruction, loaded.seed) == (7.0, "bce", 3)
    for original, reloaded in zip(vae.encode(x), loaded.encode(x), strict=True):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(reloaded))
    np.testing.assert_array_equal(np.asarray(vae.decoder(z)), np.asarray(loaded.decoder(z)))
    np.testing.assert_array_equal(np.asarray(vae.decode_logits(z)), np.asarray(loaded.decode_logits(z)))
    # The random-generator position is saved too, so even the next sampled reconstruction matches.
    np.testing.assert_array_equal(np.asarray(vae(x)), np.asarray(loaded(x)))


def _logistic(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def test_decode_logits_are_the_decoders_outputs_before_its_sigmoid():
    keras.utils.set_random_seed(0)
    vae = build_vae((8, 8, 1), TINY, seed=0)
    last_conv = vae.decoder.get_layer("decoder_conv_t_1")
    kernel, bias = last_conv.get_weights()
    last_conv.set_weights([kernel * 200.0, bias])  # push many pixels to where the sigmoid rounds to 0 or 1
    z = np.random.default_rng(2).normal(size=(6, 2)).astype("float32")

    logits = np.asarray(vae.decode_logits(z))
    probabilities = np.asarray(vae.decoder(z))
    assert logits.shape == probabilities.shape == (6, 8, 8, 1)
    np.testing.assert_allclose(_logistic(logits), probabilities, rtol=1e-6, atol=1e-7)
    # Not recovered from the rounded probabilities: logits go far beyond logit(1 - 1e-7) = 16.1.
    assert np.abs(logits).max() > 30.0


def test_decode_logits_of_a_decoder_without_the_sigmoid_layer_invert_its_clipped_output():
    """A model saved before the decoder ended in its own sigmoid layer: the logits come from the probabilities."""
    keras.utils.set_random_seed(0)
    new = build_vae((8, 8, 1), TINY, seed=0)
    z_in = keras.Input(shape=(2,))
    dense = keras.layers.Dense(64, activation="sigmoid", name="old_output")
    old_decoder = keras.Model(z_in, keras.layers.Reshape((8, 8, 1))(dense(z_in)))
    dense.set_weights([np.full((2, 64), 10.0, "float32"), np.linspace(-3, 3, 64).astype("float32")])
    old = VAE(new.encoder, old_decoder, seed=0)
    z = np.array([[0.0, 0.0], [5.0, 5.0]], dtype="float32")  # the second saturates: sigmoid(100 +- 3) is 1.0

    logits = np.asarray(old.decode_logits(z)).astype(np.float64)
    np.testing.assert_allclose(logits[0].ravel(), np.linspace(-3, 3, 64), rtol=1e-4, atol=1e-5)
    # float32 probabilities clipped to [1e-7, 1 - 1e-7] give finite logits near logit(1 - 1e-7)
    p = np.float32(1.0) - np.float32(1e-7)
    np.testing.assert_allclose(logits[1], math.log(p) - math.log1p(-p), rtol=1e-5)


def test_the_kl_weight_rises_linearly_over_the_warm_up_steps():
    vae = build_vae((8, 8, 1), TINY, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert float(vae._kl_weight()) == 1.0  # no warm-up by default
    vae.kl_warmup_steps = 4
    weights = []
    for n in range(6):
        vae.optimizer.iterations.assign(n)
        weights.append(float(vae._kl_weight()))
    # The step being taken is number n + 1: 1/4, 2/4, 3/4, then 1.
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_training_weights_the_kl_by_the_warm_up_and_validation_does_not():
    keras.utils.set_random_seed(0)
    vae = build_vae((8, 8, 1), TINY.model_copy(update={"r_loss_factor": 1.0}), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.kl_warmup_steps = 4
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")

    # One batch per epoch, so each epoch's logged loss is the loss of one step: steps 1, 2, 3, ... of 4.
    history = vae.fit(x, batch_size=16, epochs=5, validation_data=(x,), verbose=0, shuffle=False).history
    for epoch, weight in enumerate([0.25, 0.5, 0.75, 1.0, 1.0]):
        loss, reconstruction, kl = (history[key][epoch] for key in ("loss", "reconstruction_loss", "kl_loss"))
        assert kl > 1e-3  # a wrong weight would change the loss by at least 2.5e-4, far beyond the tolerance
        assert loss == pytest.approx(reconstruction + weight * kl, rel=1e-6, abs=1e-6), epoch
        val = [history[f"val_{key}"][epoch] for key in ("loss", "reconstruction_loss", "kl_loss")]
        assert val[0] == pytest.approx(val[1] + val[2], rel=1e-6, abs=1e-6), epoch
