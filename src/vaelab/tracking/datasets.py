"""The data a run trained and was tested on, as MLflow datasets (``mlflow.log_input``).

One input per split, with MLflow's context tag ``training``, ``validation`` or ``test``, so the runs table's
Dataset column and a run's Datasets panel name the data without opening an artifact. Each split's digest is
derived from the raw data's manifest (which files, with their checksums) and the processed ``meta.json``
(seed, validation fraction, caps): two runs show the same digest exactly when they saw the same images.
The profile gives the split's size and image shape.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.schema import TensorDatasetSchema
from mlflow.types import Schema, TensorSpec

from vaelab.data.processed import META, Splits, split_sizes

# vaelab's split names -> MLflow's conventional context values (mlflow.data's own examples use these).
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
DIGEST_LENGTH = 12


class ImageSplit(Dataset):
    """Metadata of one split of processed images: no pixels travel, only what identifies and sizes them."""

    def __init__(self, source, name: str, digest: str, image_shape: tuple[int, ...], profile: dict[str, Any]):
        self._image_shape = tuple(image_shape)
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest)

    def _compute_digest(self) -> str:  # always given: the split's digest comes from the manifest
        raise NotImplementedError

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    @property
    def schema(self) -> TensorDatasetSchema:
        # (batch, H, W, C) float32 in [0, 1] as the model reads them; labels (batch,) uint8.
        images = Schema([TensorSpec(np.dtype("float32"), (-1, *self._image_shape), "images")])
        labels = Schema([TensorSpec(np.dtype("uint8"), (-1,), "labels")])
        return TensorDatasetSchema(features=images, targets=labels)

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        config.update({"schema": json.dumps(self.schema.to_dict()), "profile": json.dumps(self.profile)})
        return config


def split_datasets(splits: Splits, processed_dir: Path | str, manifest_path: Path | str | None) -> dict[str, ImageSplit]:
    """One :class:`ImageSplit` per MLflow context (``training``, ``validation``, ``test``)."""
    processed_dir = Path(processed_dir).resolve()
    meta_bytes = (processed_dir / META).read_bytes()
    meta = json.loads(meta_bytes)
    manifest_bytes = Path(manifest_path).read_bytes() if manifest_path and Path(manifest_path).exists() else b""
    with warnings.catch_warnings():
        # MLflow registers two equivalent local-file source types and warns that it picked one of them.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(processed_dir.as_uri())
    sizes = split_sizes(splits)
    datasets = {}
    for split, context in CONTEXTS.items():
        digest = hashlib.sha256(b"\0".join([manifest_bytes, meta_bytes, split.encode()])).hexdigest()[:DIGEST_LENGTH]
        profile = {
            "split": split,
            "num_images": sizes[split],
            "image_shape": list(splits.image_shape),
            "classes": len(splits.class_names),
            "origin": meta.get("source"),
        }
        datasets[context] = ImageSplit(source, meta.get("dataset", "images"), digest, splits.image_shape, profile)
    return datasets
