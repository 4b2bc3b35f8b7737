"""Presets: the chapter's face configuration as `dvc exp run -S` flags, checked against the real params.yaml."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.config.load import load_config
from vaelab.config.presets import available, preset_overrides
from vaelab.errors import ConfigError
from vaelab.presets import dvc_set_flags

CELEBA_FLAGS = [
    "-S", "base.experiment=vaelab-faces",
    "-S", "data.dataset=image_folder",
    "-S", "data.image_size=128",
    "-S", "data.crop=celeba",
    "-S", "train.z_dim=200",
    "-S", "train.encoder_filters=[32,64,64,64]",
    "-S", "train.encoder_kernels=[3,3,3,3]",
    "-S", "train.encoder_strides=[2,2,2,2]",
    "-S", "train.decoder_filters=[64,64,32,3]",
    "-S", "train.decoder_kernels=[3,3,3,3]",
    "-S", "train.decoder_strides=[2,2,2,2]",
    "-S", "train.use_batch_norm=true",
    "-S", "train.dropout_rate=0.25",
    "-S", "train.r_loss_factor=10000.0",
    "-S", "train.learning_rate=0.0005",
    "-S", "train.batch_size=32",
    "-S", "evaluate.batch_size=100",
]  # fmt: skip


@pytest.fixture
def presets(project_root: Path) -> dict:
    return {"presets_dir": project_root / "presets", "params": project_root / "params.yaml"}


def test_celeba_preset_is_the_chapters_face_model(presets) -> None:
    assert "celeba" in available(presets["presets_dir"])
    overrides = preset_overrides("celeba", **presets)
    assert dvc_set_flags(overrides) == CELEBA_FLAGS
    train = load_config(presets["params"], overrides).train
    assert (train.z_dim, train.use_batch_norm, train.dropout_rate, train.r_loss_factor, train.learning_rate) == (
        200,
        True,
        0.25,
        10000.0,
        0.0005,
    )
    assert train.encoder_filters == (32, 64, 64, 64) and train.encoder_strides == (2, 2, 2, 2)
    assert train.decoder_filters == (64, 64, 32, 3) and train.decoder_strides == (2, 2, 2, 2)


@pytest.mark.parametrize("size", [64, 128])
def test_the_preset_model_builds_for_both_image_sizes(presets, size) -> None:
    from vaelab.model import build_vae

    train = load_config(presets["params"], preset_overrides("celeba", **presets)).train
    vae = build_vae((size, size, 3), train, seed=0)
    assert vae.encoder.get_layer("encoder_flatten").output.shape[-1] == (size // 16) ** 2 * 64  # four stride-2 layers
    assert tuple(vae.decoder.output.shape[1:]) == (size, size, 3)
    assert [layer.rate for layer in vae.encoder.layers if layer.name.endswith("_dropout")] == [0.25] * 4


def test_unknown_preset_and_invalid_keys_are_one_line_errors(tmp_path, presets) -> None:
    with pytest.raises(
        ConfigError,
        match=(
            r"^no preset 'faces' \(.*faces\.yaml not found\); "
            r"available presets: celeba, fashion-mnist-likelihood, mnist-likelihood, mnist-likelihood-study$"
        ),
    ):
        preset_overrides("faces", **presets)
    (tmp_path / "bad.yaml").write_text("train:\n  z_dims: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key train\.z_dims; allowed keys here: z_dim, "):
        preset_overrides("bad", tmp_path, presets["params"])
    (tmp_path / "worse.yaml").write_text("data:\n  crop: circle\n")
    with pytest.raises(ConfigError, match=r"worse\.yaml: data\.crop: .*'square' or 'celeba'; received 'circle'"):
        preset_overrides("worse", tmp_path, presets["params"])


def test_a_preset_with_a_key_written_twice_is_refused(tmp_path, presets) -> None:
    # Without the check the second train: section would replace the first, and z_dim: 200 vanish unseen.
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  z_dim: 200\ndata:\n  dataset: image_folder\ntrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError) as caught:
        preset_overrides("twice", tmp_path, presets["params"])
    assert str(caught.value) == (
        f"{twice}: line 5: duplicate key train (first at line 1); YAML allows a key once per mapping: merge the two into one"
    )


def test_cli_prints_the_flags_and_runs_dvc_with_extra_arguments(tmp_path, presets) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_dvc = bin_dir / "dvc"  # records its arguments: this test is about what vaelab passes, not about DVC
    fake_dvc.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args.txt"}\nexit 3\n')
    fake_dvc.chmod(fake_dvc.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    base = [
        sys.executable,
        "-m",
        "vaelab.cli",
        "preset",
        "celeba",
        "--presets-dir",
        str(presets["presets_dir"]),
        "--params",
        str(presets["params"]),
    ]

    printed = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert printed.stdout.split() == CELEBA_FLAGS

    ran = subprocess.run(
        [*base, "--run", "-n", "faces", "-S", "data.image_dir=/data/celeba"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert ran.returncode == 3  # dvc's own exit code
    assert (tmp_path / "args.txt").read_text().split("\n")[:-1] == [
        "exp",
        "run",
        *CELEBA_FLAGS,
        "-n",
        "faces",
        "-S",
        "data.image_dir=/data/celeba",
    ]

    missing = subprocess.run(
        [*base[:4], "nope", "--presets-dir", str(presets["presets_dir"])], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert missing.returncode == 2 and missing.stderr.strip().startswith("vaelab: error: no preset 'nope'")


def test_presets_lay_over_each_other_on_any_command_and_set_wins(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--preset on a command: the study preset needs the likelihood preset under it (iwae needs bce)."""
    from vaelab.cli_common import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    params = str(project_root / "params.yaml")
    monkeypatch.chdir(project_root)  # presets/ is found from the project folder, as the commands find it
    layered = ["--params", params, "--preset", "mnist-likelihood", "--preset", "mnist-likelihood-study"]
    config = config_from_args(parser.parse_args([*layered, "--set", "sweep.n_trials=3"]))
    assert (config.train.loss, config.train.reconstruction, config.train.epochs) == ("iwae", "bce", 250)
    assert config.evaluate.nll_samples == 100  # the study's, over the likelihood preset's 1000
    assert (config.sweep.study_name, config.sweep.n_trials) == ("mnist-likelihood", 3)
    alone = parser.parse_args(["--params", params, "--preset", "mnist-likelihood-study"])
    with pytest.raises(ConfigError, match=r"^presets/mnist-likelihood-study\.yaml: train: loss iwae .*set reconstruction: bce"):
        config_from_args(alone)
