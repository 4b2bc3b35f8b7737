"""The latent prior p(z): N(0, I), or the VampPrior's trainable pseudo-images (Tomczak & Welling 2018).

The VampPrior is the uniform mixture ``p(z) = (1/C) sum_c q(z | u_c)`` of the encoder's posteriors at C
pseudo-images ``u_c``, which are weights of the model trained with everything else. This module holds those
weights and the log density; the VAE encodes the pseudo-images (:meth:`vaelab.model.VAE.prior_components`).
No I/O here, like the model.
"""

from __future__ import annotations

import keras
from keras import ops

from vaelab.losses import mixture_log_density, standard_normal_log_density

PRIORS = ("normal", "vamp")
# Pseudo-pixels start at sigmoid(N(0, 0.1^2)): grey (0.5 +- 0.025), all alike but not equal, so that the
# components part ways as they train, and none starts as a copy of one training image.
INITIAL_SPREAD = 0.1


@keras.saving.register_keras_serializable(package="vaelab")
class PseudoInputs(keras.layers.Layer):
    """C trainable images shaped like the data, ``sigmoid(pixel_logits)``: pixels in [0, 1] with a gradient everywhere.

    A clipped pixel (the paper's hardtanh) would stop learning once it left [0, 1]; the sigmoid never does.
    """

    def __init__(self, components: int, image_shape, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # weights the encoder casts as its policy asks
        super().__init__(**kwargs)
        self.components = int(components)
        self.image_shape = tuple(int(side) for side in image_shape)
        self.seed = seed
        self.pixel_logits = self.add_weight(
            shape=(self.components, *self.image_shape),
            initializer=keras.initializers.RandomNormal(stddev=INITIAL_SPREAD, seed=seed),
            name="pixel_logits",
        )
        self.built = True

    def images(self):
        """The pseudo-images, (C, H, W, channels) float32 in [0, 1]."""
        return ops.sigmoid(self.pixel_logits)

    def get_config(self):
        return {**super().get_config(), "components": self.components, "image_shape": list(self.image_shape), "seed": self.seed}


def log_prior(z, components=None):
    """``log p(z)`` of each row of ``z`` (batch, z_dim): N(0, I) without ``components``, else the mixture of the
    Gaussians ``components = (means, log_vars)``, each (C, z_dim)."""
    if components is None:
        return standard_normal_log_density(z)
    means, log_vars = components
    return mixture_log_density(z, means, log_vars)
