"""Fetch a registered dataset into ``<paths.raw>/<name>/`` from the first of its sources that passes every check.

Sources are tried in the registry's order and the first whose decoded arrays pass every check
wins. Everything lands first in a scratch folder inside ``raw_dir`` and reaches its final name only
after verification, so an interrupted or corrupt download never looks complete.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from vaelab.data.raw import ARRAY_NAMES, MANIFEST, array_sha256, checksum_error, load_raw, read_manifest, write_raw
from vaelab.data.sources import DatasetSpec
from vaelab.errors import DataError
from vaelab.files import ensure_dir

log = logging.getLogger(__name__)


def download(spec: DatasetSpec, raw_dir: Path | str) -> Path:
    """Make ``raw_dir/<spec.name>/`` hold the verified dataset (see :mod:`vaelab.data.raw`); return it."""
    raw_dir = Path(raw_dir)
    target = raw_dir / spec.name
    if (target / MANIFEST).exists():
        try:
            if read_manifest(target)["dataset"] != spec.name:
                raise DataError(f"{target / MANIFEST} is for another dataset")
            verify_arrays(spec, load_raw(target))
        except DataError as err:
            log.warning("%s: fetching again; the copy in %s failed verification: %s", spec.name, target, err)
        else:
            log.info("%s: already present, verified (%s)", spec.name, target)
            return target

    ensure_dir(raw_dir)
    failures = []
    for source in spec.sources:
        origin = source.describe()
        log.info("%s: trying %s", spec.name, origin)
        with tempfile.TemporaryDirectory(prefix=f".download-{spec.name}-", dir=raw_dir) as workdir:
            try:
                arrays = source.fetch(Path(workdir))
                verify_arrays(spec, arrays)
            except DataError as err:
                log.warning("%s: %s failed: %s", spec.name, origin, err)
                failures.append(f"{origin}: {err}")
                continue
        write_raw(target, dataset=spec.name, source=origin, class_names=spec.class_names, arrays=arrays)
        log.info("%s: wrote %s from %s", spec.name, target, origin)
        return target
    raise DataError(f"{spec.name}: every source failed: " + ("; ".join(failures) or "the registry lists no sources"))


def verify_arrays(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> None:
    """Check names, dtypes, shapes, label range and, where the spec pins them, the arrays' sha256."""
    if sorted(arrays) != sorted(ARRAY_NAMES):
        raise DataError(f"expected arrays {', '.join(ARRAY_NAMES)}; got {', '.join(sorted(arrays))}")
    height, width, channels = spec.image_shape
    allowed_shapes = [(height, width, channels)] + ([(height, width)] if channels == 1 else [])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"x_{split}/y_{split} have dtypes {x.dtype}/{y.dtype}; expected uint8")
        if x.shape[1:] not in allowed_shapes:
            expected = " or ".join(f"(N, {', '.join(map(str, shape))})" for shape in allowed_shapes)
            raise DataError(f"x_{split} has shape {x.shape}; expected {expected}")
        if y.shape != (len(x),):
            raise DataError(f"y_{split} has shape {y.shape}; expected ({len(x)},) to match x_{split}")
        if len(y) and y.max() >= len(spec.class_names):
            raise DataError(f"y_{split} has label {y.max()}; {spec.name} has {len(spec.class_names)} classes")
    for name, expected in spec.expected_arrays.items():
        actual = array_sha256(arrays[name])
        if actual != expected:
            raise checksum_error(f"decoded {name}", f"sha256:{expected}", f"sha256:{actual}")
