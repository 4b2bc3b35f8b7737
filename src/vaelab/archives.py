"""Keras model files (``.keras``, a zip archive) whose bytes depend on the model alone.

Keras stamps the time into the file: the weights member's date, and ``metadata.json``'s ``date_saved``. A
training that reproduces its weights to the last bit would still write a new file, so DVC would record a new
hash, keep another copy and re-run every stage downstream. :func:`normalize_zip` dates every member 1980-01-01
(the zip format's earliest date, which Keras already gives two of its three members, and numpy every member of
an ``.npz``) and drops ``date_saved`` (Keras does not read it back; the MLflow run records when the model was
trained).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.files import atomic_path

if TYPE_CHECKING:
    import keras

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
KERAS_METADATA = "metadata.json"


def save_keras_model(model: keras.Model, path: Path | str) -> None:
    """``model.save(path)``, atomically, with the same bytes for the same model whenever it is saved."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        normalize_zip(tmp)


def normalize_zip(path: Path) -> None:
    """Rewrite the zip archive at ``path`` in place with every member dated :data:`FIXED_DATE`.

    Members keep their order, compression and permissions; Keras's metadata loses ``date_saved``.
    """
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            if info.filename == KERAS_METADATA:
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            target.writestr(fixed, data)
