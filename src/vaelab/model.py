"""The chapter's convolutional VAE in Keras 3: encoder, sampling layer, decoder and the training model.

No I/O and no printing here; the architecture comes from ``TrainSection`` and nothing else.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from vaelab.config.schema import TrainSection
from vaelab.errors import ConfigError
from vaelab.losses import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    iwae_bound,
    iwae_loss,
    vae_loss,
    weighted_loss,
)
from vaelab.priors import PseudoInputs, log_prior

DECODER_OUTPUT = "decoder_output"  # the decoder's final sigmoid layer


@keras.saving.register_keras_serializable(package="vaelab")
class Sampling(keras.layers.Layer):
    """Draws z = mu + sigma * eps with eps ~ N(0, I): the reparameterisation trick."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mu, log_var = inputs
        eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return mu + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="vaelab")
class VAE(keras.Model):
    """Encoder -> Sampling -> decoder, trained on ``r_loss_factor * reconstruction + KL`` (``objective`` "elbo") or
    on the negative importance-weighted bound over ``iwae_samples`` draws per image (``objective`` "iwae").

    ``prior`` "normal" is N(0, I) with the closed-form KL; "vamp" is the VampPrior over ``vamp_components``
    pseudo-images (:mod:`vaelab.priors`), whose KL is estimated at the sampled z. ``call`` decodes a sampled z,
    as the chapter's model does; use ``encode`` and ``decoder`` for the deterministic parts.
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        seed: int | None = None,
        r_loss_factor: float = 1000.0,
        reconstruction: str = "mse",
        objective: str = "elbo",
        iwae_samples: int = 1,
        prior: str = "normal",
        vamp_components: int = 500,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.sampling = Sampling(seed=seed, name="sampling")
        self.seed = seed
        self.r_loss_factor = float(r_loss_factor)
        self.reconstruction = reconstruction
        # Not ``loss``: Keras' compile() owns that attribute.
        self.objective = objective
        self.iwae_samples = int(iwae_samples)
        self.prior = prior
        self.vamp_components = int(vamp_components)
        # Only a VampPrior model has the pseudo-images; a normal-prior model's weights are those it always had.
        self.pseudo_inputs = (
            PseudoInputs(vamp_components, encoder.inputs[0].shape[1:], seed=seed, name="pseudo_inputs") if prior == "vamp" else None
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        # The unweighted bound in nats (what the loss is once KL warm-up ends), only where it is the objective.
        self.iwae_tracker = keras.metrics.Mean(name="iwae_nats") if objective == "iwae" else None
        # Training sets this (train.kl_warmup_epochs x steps per epoch): the KL weight rises from 0 to 1 over
        # that many optimizer steps. Read from the optimizer's step count, so a resumed training continues it.
        self.kl_warmup_steps = 0
        # Keras 3 averages a step's logs over several workers with strategy.reduce(MEAN, axis=0), which fails
        # on scalars (tensorflow/tensorflow#72388); training sets this under MultiWorkerMirroredStrategy so
        # each replica returns its logs as shape (1,), which that reduce turns into the workers' mean.
        self.logs_as_vectors = False
        # A plain function, not a tracked sub-model, so the decoder's weights are not listed (or saved) twice.
        self._decode_logits = _logits_function(decoder)
        # Encoder and decoder arrive built, so every weight exists; compile() can build the optimizer.
        self.built = True

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]
        return trackers if self.iwae_tracker is None else [*trackers, self.iwae_tracker]

    def encode(self, x, training=False):
        mu, log_var = self.encoder(x, training=training)
        return mu, log_var

    def decode_logits(self, z, training=False):
        """The decoder's outputs before its sigmoid: Bernoulli logits, ``decoder(z) == sigmoid(logits)``."""
        if self._decode_logits is not None:
            return self._decode_logits(z, training=training)
        # A model saved before the decoder ended in a separate sigmoid layer: invert the clipped probabilities.
        p = ops.clip(self.decoder(z, training=training), 1e-7, 1.0 - 1e-7)
        return ops.log(p) - ops.log1p(-p)

    def prior_components(self, training=False):
        """The VampPrior's Gaussians ``(means, log_vars)``, each (C, z_dim): q(z|u_c) of each pseudo-image; None for N(0, I)."""
        if self.pseudo_inputs is None:
            return None
        return self.encoder(self.pseudo_inputs.images(), training=training)

    def call(self, x, training=False):
        mu, log_var = self.encoder(x, training=training)
        return self.decoder(self.sampling([mu, log_var]), training=training)

    def train_step(self, data):
        x = _images(data)
        # Under MirroredStrategy each device sees a slice of the global batch and the optimizer sums the
        # devices' gradients, so each contributes 1/replicas of the global batch's mean-loss gradient.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self._loss_terms(x, training=True, kl_weight=self._kl_weight())
            total = terms[0]
            scaled = total / replicas if replicas > 1 else total
            # Under mixed_float16 the optimizer is a LossScaleOptimizer: small gradients would underflow float16
            # unscaled; apply_gradients divides the scale out again. Other optimizers return the loss as it is.
            scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._track(*terms)

    def test_step(self, data):
        # Sampling stays on: the validation loss estimates the same expectation as the training loss.
        return self._track(*self._loss_terms(_images(data), training=False))

    def _loss_terms(self, x, training, kl_weight=1.0):
        mu, log_var = self.encoder(x, training=training)
        if self.objective == "iwae":
            return self._iwae_terms(x, mu, log_var, training, kl_weight)
        z = self.sampling([mu, log_var])
        logits = self.decode_logits(z, training=training)
        if self.pseudo_inputs is None:
            return vae_loss(x, logits, mu, log_var, self.r_loss_factor, self.reconstruction, kl_weight)
        # No closed form against a mixture: the one-draw estimate of the KL at the z the decoder saw.
        kl = gaussian_log_density(z, mu, log_var) - log_prior(z, self.prior_components(training))
        return weighted_loss(x, logits, kl, self.r_loss_factor, self.reconstruction, kl_weight)

    def log_weight_terms(self, x, k: int, training=False, posterior=None):
        """``(log p(x|z_j), log p(z_j), log q(z_j|x))``, each (batch, k), at k draws z_j ~ q(z|x) per image.

        The draws come from the sampling layer's generator; ``posterior`` is ``(mu, log_var)`` if already encoded.
        """
        mu, log_var = posterior if posterior is not None else self.encoder(x, training=training)
        # Image-major: rows i*k .. i*k + k - 1 belong to image i; (batch * k, z_dim).
        mu, log_var = ops.repeat(mu, k, axis=0), ops.repeat(log_var, k, axis=0)
        z = self.sampling([mu, log_var])
        logits = self.decode_logits(z, training=training)
        per_image = (-1, k)
        log_likelihood = ops.reshape(bernoulli_log_likelihood(ops.repeat(x, k, axis=0), logits), per_image)
        log_p = ops.reshape(log_prior(z, self.prior_components(training)), per_image)
        return log_likelihood, log_p, ops.reshape(gaussian_log_density(z, mu, log_var), per_image)

    def _iwae_terms(self, x, mu, log_var, training, kl_weight):
        log_likelihood, log_p, log_posterior = self.log_weight_terms(x, self.iwae_samples, training, (mu, log_var))
        total, reconstruction, kl = iwae_loss(log_likelihood, log_p, log_posterior, kl_weight)
        # The reconstruction metric keeps its ELBO meaning, the per-pixel mean: -log p(x|z) / pixels.
        pixels = float(math.prod(x.shape[1:]))
        bound = -ops.mean(iwae_bound(log_likelihood + log_p - log_posterior))
        return total, reconstruction / pixels, kl, bound

    def _kl_weight(self):
        if not self.kl_warmup_steps:
            return 1.0
        step = ops.cast(self.optimizer.iterations + 1, "float32")
        return ops.minimum(1.0, step / float(self.kl_warmup_steps))

    def _track(self, total, reconstruction, kl, bound=None):
        self.loss_tracker.update_state(total)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        if self.iwae_tracker is not None:
            self.iwae_tracker.update_state(bound)
        if self.logs_as_vectors:
            return {m.name: ops.reshape(m.result(), (1,)) for m in self.metrics}
        return {m.name: m.result() for m in self.metrics}

    # Keras saves weights but not random-generator positions. Saving them too means a training
    # resumed from a checkpoint draws the same noise (sampling, dropout) as one never interrupted.
    def _rng_states(self):
        weight_ids = {id(w) for w in self.weights}
        return [v for v in self.variables if id(v) not in weight_ids and not v.trainable]

    def save_own_variables(self, store):
        for i, state in enumerate(self._rng_states()):
            store[f"rng_{i}"] = state

    def load_own_variables(self, store):
        states = self._rng_states()
        saved = [k for k in store.keys() if k.startswith("rng_")]  # noqa: SIM118 - Keras' H5 entry has keys() but no iteration
        if len(saved) == len(states):
            for i, state in enumerate(states):
                state.assign(store[f"rng_{i}"])

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "seed": self.seed,
            "r_loss_factor": self.r_loss_factor,
            "reconstruction": self.reconstruction,
            "objective": self.objective,
            "iwae_samples": self.iwae_samples,
            "prior": self.prior,
            "vamp_components": self.vamp_components,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


def build_vae(image_shape: tuple[int, int, int], train: TrainSection, seed: int, policy: str = "float32") -> VAE:
    """The chapter's VAE for images of ``image_shape`` (H, W, C); ConfigError if the settings cannot fit.

    ``policy`` is the Keras dtype policy of the convolutions and the layers between them (``mixed_bfloat16``,
    say); the latent heads (mu, log_var), the sampling, the decoder's first (dense) layer, its last convolution
    and its final sigmoid stay float32 whatever it is, and :meth:`VAE.decode_logits` returns float32, so every
    loss and likelihood is computed in float32.
    """
    height, width, channels = image_shape
    reduction = _check_shapes(height, width, channels, train)
    encoder = _build_encoder(image_shape, train, policy)
    decoder = _build_decoder((height // reduction, width // reduction, train.encoder_filters[-1]), train, policy)
    _check_likelihood(image_shape, train)
    return VAE(
        encoder,
        decoder,
        seed=seed,
        r_loss_factor=train.r_loss_factor,
        reconstruction=train.reconstruction,
        objective=train.loss,
        iwae_samples=train.iwae_samples,
        prior=train.prior,
        vamp_components=train.vamp_components,
        name="vae",
    )


def _check_likelihood(image_shape: tuple[int, int, int], train: TrainSection) -> None:
    # The importance weights are ratios of probabilities; a reconstruction weighted by anything but 1 per pixel
    # would make them ratios of something else, and the bound a bound on nothing.
    pixels = math.prod(image_shape)
    if train.loss == "iwae" and train.r_loss_factor != pixels:
        raise ConfigError(
            f"train.loss iwae needs train.r_loss_factor equal to the {pixels} pixels of a {'x'.join(map(str, image_shape))} "
            f"image (the Bernoulli log-likelihood itself); received r_loss_factor={train.r_loss_factor:g}"
        )


def _check_shapes(height: int, width: int, channels: int, train: TrainSection) -> int:
    reduction = math.prod(train.encoder_strides)
    if height % reduction or width % reduction:
        raise ConfigError(
            f"train.encoder_strides {train.encoder_strides} reduce {height}x{width} by {reduction}, "
            f"which does not divide both sides; use strides whose product divides {math.gcd(height, width)}"
        )
    enlargement = math.prod(train.decoder_strides)
    if enlargement != reduction:
        raise ConfigError(
            f"train.decoder_strides {train.decoder_strides} enlarge by {enlargement} but train.encoder_strides "
            f"{train.encoder_strides} reduce by {reduction}; make their products equal"
        )
    if train.decoder_filters[-1] != channels:
        raise ConfigError(
            f"train.decoder_filters ends with {train.decoder_filters[-1]} but the images have {channels} "
            f"channels; set its last entry to {channels}"
        )
    return reduction


def _build_encoder(image_shape: tuple[int, int, int], train: TrainSection, policy: str) -> keras.Model:
    images = keras.Input(shape=image_shape, name="encoder_input")
    x = images
    layers = zip(train.encoder_filters, train.encoder_kernels, train.encoder_strides, strict=True)
    for i, (filters, kernel, stride) in enumerate(layers):
        x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", name=f"encoder_conv_{i}", dtype=policy)(x)
        x = _after_conv(x, train, f"encoder_{i}", policy)
    x = keras.layers.Flatten(name="encoder_flatten", dtype=policy)(x)  # (batch, H/r * W/r * filters[-1])
    # The heads in float32: exp(0.5 * log_var) and the KL term are where 16 bits would lose the most.
    mu = keras.layers.Dense(train.z_dim, name="mu", dtype="float32")(x)
    log_var = keras.layers.Dense(train.z_dim, name="log_var", dtype="float32")(x)
    return keras.Model(images, [mu, log_var], name="encoder")


def _build_decoder(start_shape: tuple[int, int, int], train: TrainSection, policy: str) -> keras.Model:
    z = keras.Input(shape=(train.z_dim,), name="decoder_input")
    # float32 too: in 16 bits z itself would be rounded (8 significant bits in bfloat16), and with the chapter's
    # two latent dimensions that is the whole code. Its output is rounded instead, where 3,136 values carry it.
    # The 3-epoch quality check's gap to float32 fell from 1.13% to 1.01% (seed 42) and 0.66% to 0.42% (seed 43).
    x = keras.layers.Dense(math.prod(start_shape), name="decoder_dense", dtype="float32")(z)
    x = keras.layers.Reshape(start_shape, name="decoder_reshape", dtype=policy)(x)  # (batch, H/r, W/r, encoder_filters[-1])
    layers = list(zip(train.decoder_filters, train.decoder_kernels, train.decoder_strides, strict=True))
    for i, (filters, kernel, stride) in enumerate(layers):
        # The last convolution's outputs are the Bernoulli logits: float32, like the sigmoid after them.
        dtype = policy if i < len(layers) - 1 else "float32"
        x = keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same", name=f"decoder_conv_t_{i}", dtype=dtype)(x)
        if i < len(layers) - 1:
            x = _after_conv(x, train, f"decoder_{i}", policy)
    # The sigmoid is its own layer so that its input, the Bernoulli logits, can be read (VAE.decode_logits).
    x = keras.layers.Activation("sigmoid", name=DECODER_OUTPUT, dtype="float32")(x)  # pixels in [0, 1], like the inputs
    return keras.Model(z, x, name="decoder")


def _logits_function(decoder: keras.Model):
    """``z -> logits`` over the decoder's layers up to its final sigmoid; None for a decoder without that layer."""
    last = decoder.layers[-1]
    if last.name != DECODER_OUTPUT:
        return None
    logits_model = keras.Model(decoder.input, last.input, name="decoder_logits")
    return lambda z, training=False: ops.cast(logits_model(z, training=training), "float32")


def _after_conv(x, train: TrainSection, prefix: str, policy: str):
    if train.use_batch_norm:
        x = keras.layers.BatchNormalization(name=f"{prefix}_batch_norm", dtype=policy)(x)
    x = keras.layers.LeakyReLU(name=f"{prefix}_leaky_relu", dtype=policy)(x)
    if train.dropout_rate > 0:
        x = keras.layers.Dropout(train.dropout_rate, name=f"{prefix}_dropout", dtype=policy)(x)
    return x


def _images(data):
    # fit() hands over (x,) or (x, y) tuples when labels are given; the VAE only needs x.
    return data[0] if isinstance(data, (tuple, list)) else data
