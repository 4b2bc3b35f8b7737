"""Every malformed params file in tests/bad_params/ stops the real train stage with one line and exit code 2,
and a stage given processed data that other params made refuses it the same way.

Each file's first line is ``# expect: <part of the message>``; a file that cannot hold a comment
(the empty one) has its expectation in UNCOMMENTABLE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaelab.config.load import with_overrides
from vaelab.config.schema import Config
from vaelab.data.processed import check_made_from, write_splits
from vaelab.errors import InputMismatchError

BAD_PARAMS = Path(__file__).parent / "bad_params"
TRAIN_STAGE = Path(__file__).resolve().parents[1] / "pipeline" / "train.py"
UNCOMMENTABLE = {"empty.yaml": "file is empty"}
# These pass validation and fail only once the model meets the data's image shape, so they need
# processed data, MLflow and TensorFlow: seconds rather than a fraction of one.
NEED_DATA = {"strides_do_not_divide_image.yaml", "iwae_r_loss_factor_not_pixels.yaml"}


def _expected(path: Path) -> str:
    if path.name in UNCOMMENTABLE:
        return UNCOMMENTABLE[path.name]
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message part>'"
    return first.removeprefix("# expect: ")


def _cases() -> list:
    files = sorted(BAD_PARAMS.glob("*.yaml"))
    return [pytest.param(path, marks=[pytest.mark.slow] if path.name in NEED_DATA else [], id=path.stem) for path in files]


KINDS = (
    "wrong_type",
    "section",
    "unknown",
    "negative",
    "zero",
    "strides",
    "nan",
    "inf",
    "empty",
    "invalid_yaml",
    "non_utf8",
    "path",
    "nul_byte",
    "huge",
    "name",
    "duplicate",
)


def test_the_corpus_covers_every_kind_of_mistake() -> None:
    names = {path.stem for path in BAD_PARAMS.glob("*.yaml")}
    for kind in KINDS:
        assert any(kind in name for name in names), kind
    assert len(names) == 80


@pytest.mark.parametrize("params_file", _cases())
def test_bad_params_file_gives_one_line_and_exit_code_2(params_file: Path, tmp_path: Path) -> None:
    if params_file.name in NEED_DATA:
        _tiny_processed(tmp_path / "data" / "processed")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}

    done = subprocess.run(
        [sys.executable, str(TRAIN_STAGE), "--params", str(params_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    errors = [line for line in done.stderr.splitlines() if line.startswith("vaelab: error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and errors[0] == done.stderr.rstrip("\n").splitlines()[-1], done.stderr[-2000:]
    assert _expected(params_file) in errors[0]
    if params_file.name not in NEED_DATA:
        assert done.stderr.count("\n") == 1  # nothing but the error: the file is refused before any work
    assert not (tmp_path / "models").exists()  # no model, no run-info file


# What preprocess records of Fashion-MNIST under the shipped params' split settings.
FASHION_META = {"dataset": "fashion_mnist", "seed": 42, "val_fraction": 0.1, "max_train": None, "max_test": None}


@pytest.mark.parametrize("stage", ["train", "classifier", "evaluate"])
def test_stage_refuses_processed_data_that_other_params_made(stage: str, project_root: Path, tmp_path: Path) -> None:
    _tiny_processed(tmp_path / "data" / "processed", **FASHION_META)
    params = tmp_path / "params.yaml"
    params.write_text((project_root / "params.yaml").read_text())  # data.dataset: mnist
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}

    done = subprocess.run(
        [sys.executable, str(project_root / "pipeline" / f"{stage}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "vaelab: error: data/processed/meta.json: holds data made with dataset='fashion_mnist' but params.yaml says "
        "data.dataset='mnist'; run `dvc repro preprocess` (or `vaelab preprocess`) to remake it from these params"
    ]
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run either: the store was never opened


def test_every_recorded_setting_that_differs_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "processed"
    _tiny_processed(folder, **{**FASHION_META, "dataset": "mnist", "seed": 7, "max_train": 16})
    config = with_overrides(Config(), {"data.max_test": 8})

    with pytest.raises(InputMismatchError) as caught:
        check_made_from(folder, config.split_settings())

    assert str(caught.value).startswith(
        f"{folder / 'meta.json'}: holds data made with seed=7, max_train=16, max_test=None but params.yaml says "
        "base.seed=42, data.max_train=None, data.max_test=8; run `dvc repro preprocess`"
    )


def test_settings_that_meta_json_does_not_record_are_not_compared(tmp_path: Path) -> None:
    settings = with_overrides(Config(), {"base.seed": 7, "data.max_train": 100}).split_settings()
    _tiny_processed(tmp_path / "unrecorded", dataset="mnist")  # as hand-made test data: no seed, no split settings
    check_made_from(tmp_path / "unrecorded", settings)  # nothing recorded differs: accepted
    # The same settings against data that records its seed: refused, so the call above was a real comparison.
    _tiny_processed(tmp_path / "recorded", dataset="mnist", seed=42)
    with pytest.raises(InputMismatchError, match=r"holds data made with seed=42 but params.yaml says base.seed=7;"):
        check_made_from(tmp_path / "recorded", settings)


def _tiny_processed(folder: Path, **meta) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, 10, n).astype("uint8")
    meta = {"dataset": "mnist", "image_shape": [28, 28, 1], "class_names": [str(d) for d in range(10)], **meta}
    write_splits(folder, arrays, meta)
