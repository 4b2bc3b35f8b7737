"""Every malformed params file in tests/bad_params/ stops the real train stage with one line and exit code 2.

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

from vaelab.data.processed import write_splits

BAD_PARAMS = Path(__file__).parent / "bad_params"
TRAIN_STAGE = Path(__file__).resolve().parents[1] / "pipeline" / "train.py"
UNCOMMENTABLE = {"empty.yaml": "file is empty"}
# These pass validation and fail only once the model meets the data's image shape, so they need
# processed data, MLflow and TensorFlow: seconds rather than a fraction of one.
NEED_DATA = {"strides_do_not_divide_image.yaml"}


def _expected(path: Path) -> str:
    if path.name in UNCOMMENTABLE:
        return UNCOMMENTABLE[path.name]
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message part>'"
    return first.removeprefix("# expect: ")


def _cases() -> list:
    files = sorted(BAD_PARAMS.glob("*.yaml"))
    return [
        pytest.param(path, marks=[pytest.mark.slow] if path.name in NEED_DATA else [], id=path.stem) for path in files
    ]


def test_the_corpus_covers_every_kind_of_mistake() -> None:
    names = {path.stem for path in BAD_PARAMS.glob("*.yaml")}
    for kind in ("wrong_type", "section", "unknown", "negative", "zero", "strides", "nan", "inf", "empty", "invalid_yaml", "non_utf8"):
        assert any(kind in name for name in names), kind
    assert len(names) == 31


@pytest.mark.parametrize("params_file", _cases())
def test_bad_params_file_gives_one_line_and_exit_code_2(params_file: Path, tmp_path: Path) -> None:
    if params_file.name in NEED_DATA:
        _tiny_processed(tmp_path / "data" / "processed")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}

    done = subprocess.run(
        [sys.executable, str(TRAIN_STAGE), "--params", str(params_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )

    errors = [line for line in done.stderr.splitlines() if line.startswith("vaelab: error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and errors[0] == done.stderr.rstrip("\n").splitlines()[-1], done.stderr[-2000:]
    assert _expected(params_file) in errors[0]
    if params_file.name not in NEED_DATA:
        assert done.stderr.count("\n") == 1  # nothing but the error: the file is refused before any work
    assert not (tmp_path / "models").exists()  # no model, no run-info file


def _tiny_processed(folder: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, 10, n).astype("uint8")
    write_splits(folder, arrays, {"dataset": "mnist", "image_shape": [28, 28, 1], "class_names": [str(d) for d in range(10)]})
