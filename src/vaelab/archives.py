"""Keras model files (``.keras``, a zip archive) whose bytes depend on the model alone.

Keras stamps the time into the file (the weights member's date, ``metadata.json``'s ``date_saved``) and, in
``config.json``, the memory address of each object several layers share. A training that reproduces its
weights to the last bit would still write a new file, so DVC would record a new
hash, keep another copy and re-run every stage downstream. :func:`normalize_zip` dates every member 1980-01-01
(the zip format's earliest date, which Keras already gives two of its three members, and numpy every member of
an ``.npz``), drops ``date_saved`` (Keras does not read it back; the MLflow run records when the model was
trained) and numbers the shared objects 0, 1, ... in order of appearance.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.files import atomic_path

if TYPE_CHECKING:
    import keras

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
SHARED_ID = "shared_object_id"


def save_keras_model(model: keras.Model, path: Path | str) -> None:
    """``model.save(path)``, atomically, with the same bytes for the same model whenever it is saved."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        normalize_zip(tmp)


def normalize_zip(path: Path) -> None:
    """Rewrite the zip archive at ``path`` in place with every member dated :data:`FIXED_DATE`.

    Members keep their order, compression and permissions; Keras's metadata loses ``date_saved`` and its
    config's shared objects are renumbered.
    """
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            if info.filename == KERAS_METADATA:
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == KERAS_CONFIG:
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            target.writestr(fixed, data)


def _renumber_shared_objects(config: Any) -> Any:
    """``config`` with each ``shared_object_id`` replaced by its rank of first appearance (0, 1, ...).

    Keras marks an object that several layers share (a dtype policy, an initializer) with its Python ``id()``,
    a memory address that changes from process to process; loading only matches equal ids within the file.
    """
    ranks: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: ranks.setdefault(value, len(ranks)) if key == SHARED_ID else walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)
