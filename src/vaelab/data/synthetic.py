"""Cartoon faces for trying the image-folder pipeline without CelebA (tests, demos, memory measurements).

Each image is a face (skin-coloured ellipse, hair, two eyes, a mouth) on a coloured background, with
seeded random colours, size and position. With ``groups``, images go into one subfolder per group,
and the groups differ in one visible attribute (the mouth: a straight line or a smile), which gives the
latent-arithmetic picture something to find.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

CELEBA_SIZE = (178, 218)  # (width, height) of CelebA's aligned images


def draw_face(rng: np.random.Generator, size: tuple[int, int] = CELEBA_SIZE, smiling: bool = False):
    """One face as a Pillow RGB image of ``size`` (width, height)."""
    from PIL import Image, ImageDraw

    width, height = size
    colour = lambda low, high: tuple(int(c) for c in rng.integers(low, high, 3))  # noqa: E731
    image = Image.new("RGB", size, colour(0, 256))
    draw = ImageDraw.Draw(image)
    cx, cy = width * rng.uniform(0.45, 0.55), height * rng.uniform(0.45, 0.55)
    rx, ry = width * rng.uniform(0.25, 0.33), height * rng.uniform(0.28, 0.36)
    draw.ellipse((cx - rx * 1.05, cy - ry * 1.1, cx + rx * 1.05, cy + ry * 0.2), fill=colour(0, 120))  # hair
    skin = rng.uniform(0.45, 1.0)
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=(int(235 * skin), int(190 * skin), int(160 * skin)))
    eye_y, eye_dx, eye_r = cy - ry * 0.2, rx * 0.42, max(1.0, rx * 0.12)
    for ex in (cx - eye_dx, cx + eye_dx):
        draw.ellipse((ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r), fill=colour(0, 90))
    mouth_y, mouth_w = cy + ry * 0.45, rx * 0.5
    line = max(1, round(rx * 0.08))
    if smiling:
        draw.arc((cx - mouth_w, mouth_y - ry * 0.25, cx + mouth_w, mouth_y + ry * 0.15), 20, 160, fill=(150, 30, 40), width=line)
    else:
        draw.line((cx - mouth_w * 0.8, mouth_y, cx + mouth_w * 0.8, mouth_y), fill=(150, 30, 40), width=line)
    return image


def write_faces(
    folder: Path | str,
    count: int,
    *,
    size: tuple[int, int] = CELEBA_SIZE,
    seed: int = 0,
    groups: Sequence[str] = (),
    suffix: str = ".jpg",
) -> list[Path]:
    """Write ``count`` faces as ``000000.jpg``, ... into ``folder`` (or alternately into its ``groups`` subfolders).

    With two groups, the second one's faces smile. Returns the paths written.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        group = index % len(groups) if groups else None
        target = folder if group is None else folder / groups[group]
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{index:06d}{suffix}"
        face = draw_face(rng, size, smiling=group == 1)
        face.save(path, **({"quality": 90} if suffix in (".jpg", ".jpeg") else {}))
        paths.append(path)
    return paths
