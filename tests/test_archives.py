"""The train and classifier stages' Keras files have the same bytes for the same model (vaelab.archives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
from tiny import tiny_network

from vaelab.archives import FIXED_DATE, normalize_zip, save_keras_model
from vaelab.config.load import load_config
from vaelab.config.schema import ClassifierSection
from vaelab.evaluation.classifier import build_classifier
from vaelab.model import build_vae


def test_a_model_saved_twice_seconds_apart_has_the_same_bytes_and_loads_back(tmp_path: Path, project_root: Path) -> None:
    config = load_config(project_root / "params.yaml", {**tiny_network([4, 4], [4, 1]), "train.z_dim": 2})
    model = build_vae((28, 28, 1), config.train, seed=0)
    save_keras_model(model, tmp_path / "first.keras")
    time.sleep(2.1)  # a zip date counts in steps of 2 s; Keras's date_saved in seconds
    save_keras_model(model, tmp_path / "second.keras")

    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.keras") as archive:
        assert [info.filename for info in archive.infolist()] == ["metadata.json", "config.json", "model.weights.h5"]
        assert {info.date_time for info in archive.infolist()} == {FIXED_DATE}
        assert json.loads(archive.read("metadata.json")) == {"keras_version": keras.__version__}
    loaded = keras.models.load_model(tmp_path / "first.keras", safe_mode=True)
    for saved, original in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary file left


def test_normalizing_keeps_members_order_compression_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        packed = zipfile.ZipInfo("b.txt", date_time=(2026, 12, 7, 1, 2, 4))
        packed.compress_type, packed.external_attr = zipfile.ZIP_DEFLATED, 0o640 << 16
        archive.writestr(packed, "b" * 1000)
        archive.writestr(zipfile.ZipInfo("a.txt", date_time=(2026, 12, 7, 1, 2, 6)), "a")
    normalize_zip(path)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert [(info.filename, info.date_time, info.compress_type) for info in infos] == [
            ("b.txt", FIXED_DATE, zipfile.ZIP_DEFLATED),
            ("a.txt", FIXED_DATE, zipfile.ZIP_STORED),
        ]
        assert infos[0].external_attr == 0o640 << 16
        assert archive.read("b.txt") == b"b" * 1000 and archive.read("a.txt") == b"a"
    assert os.listdir(tmp_path) == ["archive.zip"]


# Builds the classifier stage's network (its layers share one dtype policy object) and saves it where argv[1] says.
SAVE_CLASSIFIER = """
import sys, keras
from vaelab.archives import save_keras_model
from vaelab.config.schema import ClassifierSection
from vaelab.evaluation.classifier import build_classifier
keras.utils.set_random_seed(0)
save_keras_model(build_classifier((28, 28, 1), 10, ClassifierSection()), sys.argv[1])
"""


def test_the_classifier_saved_by_two_processes_has_the_same_bytes_and_loads_back_as_built(tmp_path: Path) -> None:
    paths = [tmp_path / "first.keras", tmp_path / "second.keras"]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE_CLASSIFIER, str(path)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as archive:
        ids = {value for key, value in _items(json.loads(archive.read("config.json"))) if key == "shared_object_id"}
    assert ids == {0}  # one object (the dtype policy) shared by several layers, numbered 0
    keras.utils.set_random_seed(0)
    built = build_classifier((28, 28, 1), 10, ClassifierSection())
    built.save(tmp_path / "plain.keras")  # Keras's own file: what loading it gives, loading ours must give too
    loaded = keras.models.load_model(paths[0], safe_mode=True)
    assert loaded.get_config() == keras.models.load_model(tmp_path / "plain.keras", safe_mode=True).get_config()
    for saved, original in zip(loaded.get_weights(), built.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)


def test_shared_object_ids_are_numbered_in_order_of_first_appearance(tmp_path: Path) -> None:
    config = {"a": {"shared_object_id": 7345}, "b": [{"shared_object_id": 12}, {"c": {"shared_object_id": 7345}}]}
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    normalize_zip(path)
    with zipfile.ZipFile(path) as archive:
        renumbered = json.loads(archive.read("config.json"))
    assert renumbered == {"a": {"shared_object_id": 0}, "b": [{"shared_object_id": 1}, {"c": {"shared_object_id": 0}}]}


def _items(node):
    """Every (key, value) pair of the nested dicts and lists in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _items(value)
    elif isinstance(node, list):
        for item in node:
            yield from _items(item)
