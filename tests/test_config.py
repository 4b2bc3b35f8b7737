"""params.yaml validation: every kind of mistake gives one line naming the key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.config import Config, load_config
from vaelab.errors import ConfigError


def test_shipped_params_match_the_defaults(project_root: Path) -> None:
    # params.yaml is the documentation of the defaults; the dataclass defaults must not drift from it.
    assert load_config(project_root / "params.yaml") == Config()


def test_flat_keys_use_dvc_dotted_form(project_root: Path) -> None:
    flat = load_config(project_root / "params.yaml").flat()
    assert flat["train.z_dim"] == 2
    assert flat["train.encoder_strides"] == [1, 2, 2, 1]
    assert flat["paths.model"] == "models/vae.keras"


def test_overrides_apply_and_validate(project_root: Path) -> None:
    config = load_config(project_root / "params.yaml", {"train.z_dim": 8, "train.learning_rate": "1e-4"})
    assert (config.train.z_dim, config.train.learning_rate) == (8, 1e-4)
    assert config.with_overrides({"train.epochs": 3}).train.epochs == 3


def test_yaml_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n  r_loss_factor: 2E3\n")
    config = load_config(path)
    assert (config.train.learning_rate, config.train.r_loss_factor) == (1e-4, 2000.0)


BAD_OVERRIDES = [
    ({"train.z_dim": 0}, "train.z_dim: Input should be greater than or equal to 1; received 0"),
    ({"train.z_dim": 2.5}, "train.z_dim: Input should be a valid integer; received 2.5"),
    ({"train.z_dim": "8"}, "train.z_dim: Input should be a valid integer; received '8'"),
    ({"train.learning_rate": 0}, "train.learning_rate: Input should be greater than 0; received 0"),
    ({"train.learning_rate": -0.1}, "train.learning_rate: Input should be greater than 0; received -0.1"),
    ({"train.learning_rate": float("nan")}, "train.learning_rate: must be a finite number; received nan"),
    ({"train.r_loss_factor": float("inf")}, "train.r_loss_factor: must be a finite number; received inf"),
    ({"data.val_fraction": 0}, "data.val_fraction: Input should be greater than 0; received 0"),
    ({"data.val_fraction": 1.0}, "data.val_fraction: Input should be less than 1; received 1.0"),
    ({"data.dataset": "cifar"}, "data.dataset: unknown dataset; allowed: fashion_mnist, image_folder, mnist; received 'cifar'"),
    ({"train.reconstruction": "l1"}, "train.reconstruction: Input should be 'mse' or 'bce'; received 'l1'"),
    ({"train.use_batch_norm": "yes"}, "train.use_batch_norm: Input should be a valid boolean; received 'yes'"),
    ({"train.batch_size": -32}, "train.batch_size: Input should be greater than or equal to 1; received -32"),
    ({"train.encoder_filters": [32, 0, 64, 64]}, "train.encoder_filters.1: Input should be greater than or equal to 1; received 0"),
    (
        {"train.encoder_strides": [1, 2]},
        "train: encoder layer lists must have the same non-zero length; "
        "encoder_filters has 4, encoder_kernels has 4, encoder_strides has 2",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OVERRIDES, ids=[m.split(":")[0] for _, m in BAD_OVERRIDES])
def test_bad_values_name_key_value_and_rule(project_root: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", overrides)
    assert str(caught.value) == f"override: {message}"


def test_unknown_key_lists_the_allowed_ones(project_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"^override: unknown key train\.zdim; allowed keys here: z_dim, encoder_filters"):
        load_config(project_root / "params.yaml", {"train.zdim": 3})


def test_unknown_section_lists_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("trian:\n  z_dim: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: unknown key trian; allowed keys here: base, paths, data, train, evaluate, classifier, sweep"


BAD_FILES = {
    "empty": (b"", "file is empty; expected sections base, paths, data, train, evaluate, classifier, sweep"),
    "invalid_yaml": (b"train:\n  z_dim: [1, 2\n", "line 3, column 1: invalid YAML"),
    "not_utf8": (b"train:\n  z_dim: \xff\n", "not valid UTF-8 (byte 0xff at offset 16)"),
    "a_list": (b"- 1\n- 2\n", "expected a mapping of sections, received list"),
    "section_not_mapping": (b"train: 3\n", "train: Input should be a valid dictionary or instance of TrainSection; received 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files(tmp_path: Path, case: str) -> None:
    content, expected = BAD_FILES[case]
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("stage", ["download", "preprocess", "train", "evaluate"])
def test_stage_entry_prints_one_line_and_exits_2(project_root: Path, tmp_path: Path, stage: str) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  z_dim: 0\n")
    done = subprocess.run(
        [sys.executable, str(project_root / "pipeline" / f"{stage}.py"), "--params", str(bad)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"vaelab: error: {bad}: train.z_dim: Input should be greater than or equal to 1; received 0"
    ]
    assert "Traceback" not in done.stderr


def test_set_override_is_validated_like_the_file(project_root: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "download", "--params", str(project_root / "params.yaml"),
         "--set", "data.val_fraction=2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "vaelab: error: override: data.val_fraction: Input should be less than 1; received 2"


BAD_SPACES = [
    ({"z_dim": {"low": 64, "high": 2}}, "sweep.space.z_dim: low must not exceed high; received low=64, high=2"),
    ({"learning_rate": {"low": 0, "high": 0.1, "log": True}},
     "sweep.space.learning_rate: a log-scale range needs low > 0; received low=0"),
    ({"zdim": {"low": 2, "high": 8}},
     "sweep.space: cannot search 'zdim'; searchable train keys: z_dim, r_loss_factor, learning_rate, lr_decay, "
     "dropout_rate, batch_size"),
    ({}, "sweep.space: the search space is empty; give at least one train.* key with low and high"),
    ({"z_dim": {"low": 2}}, "sweep.space.z_dim.high: Field required"),
]


@pytest.mark.parametrize(("space", "message"), BAD_SPACES, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_SPACES)])
def test_bad_search_space(project_root: Path, space: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", {"sweep.space": space})
    assert str(caught.value).startswith(f"override: {message}")
