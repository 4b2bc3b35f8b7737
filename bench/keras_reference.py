"""A plain Keras 3 VAE of the chapter's architecture: the benchmark's yardstick for vaelab's training step.

Written the way a textbook does it and deliberately not tuned: functional encoder and decoder, a
sampling layer, a custom ``train_step`` with ``tf.GradientTape``, Adam, and ``model.fit`` on in-memory
NumPy arrays. Nothing here is shared with ``vaelab``, so a change to vaelab never moves the yardstick.

``policy="mixed_bfloat16"`` builds the same model the way Keras' mixed-precision guide has it: every layer
computes in bfloat16 except the means, log-variances, sampling and the sigmoid output, which stay float32
like the loss; variables and Adam's state are float32 either way.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops

IMAGE_SHAPE = (28, 28, 1)
Z_DIM = 2


class Sampling(layers.Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def build_encoder(seed=None, policy: str = "float32") -> keras.Model:
    images = keras.Input(shape=IMAGE_SHAPE)
    x = images
    for filters, stride in ((32, 1), (64, 2), (64, 2), (64, 1)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", dtype=policy)(x)
        x = layers.LeakyReLU(dtype=policy)(x)
    x = layers.Flatten(dtype=policy)(x)  # (batch, 7 * 7 * 64)
    z_mean = layers.Dense(Z_DIM, name="z_mean", dtype="float32")(x)
    z_log_var = layers.Dense(Z_DIM, name="z_log_var", dtype="float32")(x)
    z = Sampling(seed, dtype="float32")([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(policy: str = "float32") -> keras.Model:
    z = keras.Input(shape=(Z_DIM,))
    x = layers.Dense(7 * 7 * 64, dtype=policy)(z)
    x = layers.Reshape((7, 7, 64), dtype=policy)(x)
    for filters, stride in ((64, 1), (64, 2), (32, 2)):
        x = layers.Conv2DTranspose(filters, 3, strides=stride, padding="same", dtype=policy)(x)
        x = layers.LeakyReLU(dtype=policy)(x)
    # (batch, 28, 28, 1), float32 so the loss sees float32 pixels
    images = layers.Conv2DTranspose(1, 3, strides=1, padding="same", activation="sigmoid", dtype="float32")(x)
    return keras.Model(z, images, name="decoder")


class ReferenceVAE(keras.Model):
    def __init__(self, encoder, decoder, r_loss_factor=1000.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.r_loss_factor = r_loss_factor
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def call(self, images):
        return self.decoder(self.encoder(images)[2])

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.mean(ops.square(data - reconstruction), axis=(1, 2, 3)))
            kl_loss = ops.mean(-0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1))
            total_loss = self.r_loss_factor * reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def build_reference_vae(
    seed: int = 0, learning_rate: float = 0.0005, r_loss_factor: float = 1000.0, policy: str = "float32"
) -> ReferenceVAE:
    """The compiled reference; ``policy`` is a Keras dtype policy name, "float32" or "mixed_bfloat16"."""
    keras.utils.set_random_seed(seed)
    model = ReferenceVAE(build_encoder(seed, policy), build_decoder(policy), r_loss_factor=r_loss_factor)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate))
    return model
