"""The train and classifier stages' Keras files have the same bytes for the same model (vaelab.archives)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
from tiny import tiny_network

from vaelab.archives import FIXED_DATE, normalize_zip, save_keras_model
from vaelab.config.load import load_config
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
