"""One image file's bytes -> a square RGB uint8 array: decode, orient, centre-crop, resize (Pillow).

Crops (``data.crop``), both centred and square before resizing to ``data.image_size``:

- ``square``: the largest centred square, side ``min(width, height)``.
- ``celeba``: the face region of CelebA's aligned images, the usual 148 x 148 centre crop of the
  178 x 218 ``img_align_celeba`` files; other sizes get a square of side ``min(width, height) * 148 / 178``.

Grayscale, palette and 16-bit images become RGB; transparency is composed onto black (colour times
alpha). EXIF orientation is applied, so phone photos come out upright. Resizing uses Lanczos filtering,
which averages over the source pixels when shrinking instead of skipping them.
"""

from __future__ import annotations

import io
import math

import numpy as np

from vaelab.errors import first_line

CROPS = ("square", "celeba")
CELEBA_FACE_FRACTION = 148 / 178
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")


class UnreadableImage(Exception):
    """The bytes are not an image Pillow can decode completely; the message says why."""


def crop_box(width: int, height: int, crop: str) -> tuple[float, float, float, float]:
    """The centred square ``(left, top, right, bottom)`` that ``crop`` keeps of a ``width`` x ``height`` image."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}; received crop={crop!r}")
    side = min(width, height) * (CELEBA_FACE_FRACTION if crop == "celeba" else 1.0)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def load_image(data: bytes, size: int, crop: str) -> np.ndarray:
    """Decode ``data`` into ``(size, size, 3)`` uint8 RGB; :class:`UnreadableImage` if it cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as opened:
            _decode_small(opened, size, crop)
            image = ImageOps.exif_transpose(opened)
            image.load()  # a truncated file fails here, not later
            rgb = _to_rgb(image)
            width, height = rgb.size
            resized = rgb.resize((size, size), Image.Resampling.LANCZOS, box=crop_box(width, height, crop))
            return np.asarray(resized, dtype=np.uint8).copy()
    # Pillow reports malformed files through many exception types (OSError, SyntaxError, struct.error,
    # DecompressionBombError, ...); for a folder of images each means the same: this file cannot be used.
    except Exception as err:  # noqa: BLE001
        raise UnreadableImage(f"{type(err).__name__}: {first_line(err, 300) if str(err) else 'cannot decode'}") from None


def _decode_small(image, size: int, crop: str) -> None:
    """Let a JPEG decoder scale down by 2, 4 or 8 while decoding, keeping the crop at least ``size`` pixels."""
    width, height = image.size
    side = crop_box(width, height, crop)[2] - crop_box(width, height, crop)[0]
    if side > 2 * size:
        scale = size / side
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _to_rgb(image):
    from PIL import Image

    if image.mode in _SIXTEEN_BIT_MODES:
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return image.convert("RGB")
