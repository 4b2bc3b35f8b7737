"""Bernoulli binarization: each pixel becomes 1 with probability equal to its grey level, else 0.

Likelihoods in the VAE literature are log-probabilities of binary images; a cross-entropy against grey
levels is not the probability of anything. Two ways of binarizing, as in the papers:

- stored (``fixed``, and validation and test under ``dynamic``): drawn once and written as uint8 0 or 255
  by the preprocess stage. The bits come from :data:`SEED` and the image's place in the raw data, not from
  ``base.seed`` or the split, so every run, cap and machine sees the same test bits.
- dynamic (training images under ``dynamic``): drawn afresh each time a batch is read, from a stateless
  generator keyed by ``base.seed`` and the batch's step number (see :func:`vaelab.data.shards.image_batches`),
  so epochs differ, a re-run is identical and a resumed training draws what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

SEED = 20160101  # the stored bits' seed; a constant so that no setting changes the test set
STREAMS = {"train": 0, "test": 1}  # one stream per raw set, read in the raw images' order
_CHUNK = 4096  # images per draw, so a large raw set never needs its float64 uniforms at once


def stored_splits(kind: str) -> tuple[str, ...]:
    """The splits preprocess stores binarized for ``data.binarize == kind``."""
    return {"none": (), "dynamic": ("val", "test"), "fixed": ("train", "val", "test")}[kind]


def binarize_raw(images: np.ndarray, raw_set: str) -> np.ndarray:
    """Fixed bits for a whole raw set (``"train"`` or ``"test"``), uint8 0 or 255 in the shape of ``images``.

    Image ``i`` of the raw set always gets the same bits: the uniforms are drawn in order, a chunk at a time,
    from one stream per raw set.
    """
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED, STREAMS[raw_set]])))
    out = np.empty(images.shape, dtype=np.uint8)
    for start in range(0, len(images), _CHUNK):
        grey = images[start : start + _CHUNK]
        uniforms = generator.random(grey.shape)
        # A pixel of grey level g (0..255) is on with probability g / 255: never when 0, always when 255.
        out[start : start + _CHUNK] = np.where(uniforms * 255.0 < grey, 255, 0)
    return out
