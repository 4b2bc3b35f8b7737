"""params.yaml validation: every kind of mistake gives one line naming the key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaelab import sizes as sizes_module
from vaelab.config.load import load_config, with_overrides
from vaelab.config.params_file import read_params
from vaelab.config.schema import Config
from vaelab.errors import ConfigError
from vaelab.sizes import image_shape, vae_size


def test_params_yaml_writes_out_every_default_of_the_schema_and_nothing_else(project_root: Path) -> None:
    # The schema's defaults are the only ones; params.yaml spells each out for DVC and the reader, so a key
    # left out or a value changed in one place only is a mistake.
    written = read_params(project_root / "params.yaml")
    defaults = Config().model_dump(mode="json")
    assert {section: sorted(keys) for section, keys in written.items()} == {section: sorted(keys) for section, keys in defaults.items()}
    assert Config.model_validate(written) == Config()


def test_flat_keys_use_dvc_dotted_form(project_root: Path) -> None:
    flat = load_config(project_root / "params.yaml").flat()
    assert flat["train.z_dim"] == 2
    assert flat["train.encoder_strides"] == [1, 2, 2, 1]
    assert flat["paths.model"] == "models/vae.keras"


def test_overrides_apply_and_validate(project_root: Path) -> None:
    config = load_config(project_root / "params.yaml", {"train.z_dim": 8, "train.learning_rate": "1e-4"})
    assert (config.train.z_dim, config.train.learning_rate) == (8, 1e-4)
    assert with_overrides(config, {"train.epochs": 3}).train.epochs == 3


def test_binarize_and_kl_warm_up_take_their_values(project_root: Path) -> None:
    config = load_config(project_root / "params.yaml")
    assert (config.data.binarize, config.train.kl_warmup_epochs) == ("none", 0)
    for kind in ("none", "dynamic", "fixed"):
        assert with_overrides(config, {"data.binarize": kind}).data.binarize == kind
    assert with_overrides(config, {"train.kl_warmup_epochs": 10}).train.kl_warmup_epochs == 10
    # An image folder keeps its grey levels; the refusal above is only for binarizing it.
    assert with_overrides(config, {"data.dataset": "image_folder"}).data.binarize == "none"


def test_an_experiment_name_of_the_longest_length_gives_a_registered_model_name_of_at_most_256() -> None:
    from vaelab.tracking.registry import registered_model_name

    config = with_overrides(Config(), {"base.experiment": "x" * 232, "data.dataset": "fashion_mnist", "data.binarize": "dynamic"})
    assert len(registered_model_name(config.base.experiment, config.data.dataset, config.data.binarize)) == 256


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
    ({"data.binarize": "yes"}, "data.binarize: Input should be 'none', 'dynamic' or 'fixed'; received 'yes'"),
    ({"data.binarize": True}, "data.binarize: Input should be 'none', 'dynamic' or 'fixed'; received True"),
    (
        {"data.dataset": "image_folder", "data.binarize": "fixed"},
        "data: binarize 'fixed' needs a registered dataset such as mnist or fashion_mnist; an image folder keeps binarize: none",
    ),
    ({"train.kl_warmup_epochs": -1}, "train.kl_warmup_epochs: Input should be greater than or equal to 0; received -1"),
    ({"train.kl_warmup_epochs": 1.5}, "train.kl_warmup_epochs: Input should be a valid integer; received 1.5"),
    ({"train.use_batch_norm": "yes"}, "train.use_batch_norm: Input should be a valid boolean; received 'yes'"),
    ({"train.batch_size": -32}, "train.batch_size: Input should be greater than or equal to 1; received -32"),
    ({"train.encoder_filters": [32, 0, 64, 64]}, "train.encoder_filters.1: Input should be greater than or equal to 1; received 0"),
    ({"base.seed": 2**32}, "base.seed: Input should be less than or equal to 4294967295; received 4294967296"),
    ({"paths.model": ""}, "paths.model: must not be empty or blank; received ''"),
    ({"paths.plots": " "}, "paths.plots: must not be empty or blank; received ' '"),
    (
        {"paths.processed": "data/\x00processed"},
        "paths.processed: must not contain control or invisible characters such as '\\x00'; received 'data/\\x00processed'",
    ),
    ({"paths.history": "reports/"}, "paths.history: must name a file, but names a folder; received 'reports/'"),
    ({"paths.run_info": "models/.."}, "paths.run_info: must name a file, but names a folder; received 'models/..'"),
    (
        {"paths.model": "models/vae.h5"},
        "paths.model: must end in .keras, the format Keras 3 saves and the evaluate stage loads; received 'models/vae.h5'",
    ),
    (
        {"paths.metrics": "./reports/history.csv"},
        "paths: history ('reports/history.csv') is the same path as metrics ('reports/history.csv'); give each its own place",
    ),
    (
        {"paths.checkpoints": "data/raw/checkpoints"},
        "paths: checkpoints ('data/raw/checkpoints') lies inside raw ('data/raw'); give each its own place",
    ),
    ({"paths.raw": "."}, "paths: processed ('data/processed') lies inside raw ('.'); give each its own place"),
    ({"base.experiment": ""}, "base.experiment: must not be empty or blank; received ''"),
    (
        {"base.experiment": "vae\tmnist"},
        "base.experiment: must not contain control or invisible characters such as '\\t'; received 'vae\\tmnist'",
    ),
    (
        {"base.experiment": "team/vae"},
        "base.experiment: must not contain / or \\: the name also names a folder (mlartifacts/, sweeps/); received 'team/vae'",
    ),
    (
        {"base.experiment": " vae"},
        "base.experiment: must not start or end with white space, which would make it look like another name; received ' vae'",
    ),
    (
        # 256 - len("-fashion_mnist-binarized"): the longest registered model name that an experiment gets
        {"base.experiment": "x" * 233},
        "base.experiment: must be at most 232 characters, not 233: the registered model "
        f"<experiment>-<dataset>-binarized gets at most 256; received {'x' * 233!r}",
    ),
    ({"sweep.study_name": "."}, "sweep.study_name: must not be . or .., which name folders that already exist; received '.'"),
    (
        {"sweep.study_name": "\u00e9" * 128},
        f"sweep.study_name: must be at most 255 bytes in UTF-8, not 256: it names a folder; received {chr(233) * 128!r}",
    ),
    ({"sweep.storage": ""}, "sweep.storage: must not be empty or blank; received ''"),
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
    "impossible_date": (b"base:\n  seed: 2020-13-45\n", "invalid YAML: a date or number that cannot be read (month must be in 1..12)"),
    "too_deep": (b"train:\n  z_dim: " + b"[" * 5000 + b"]" * 5000, "invalid YAML: lists or mappings nested too deeply to read"),
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


DUPLICATES = {
    "section": (
        "base:\n  seed: 1\ntrain:\n  z_dim: 3\nbase:\n  experiment: other\n",
        "line 5: duplicate key base (first at line 1); YAML allows a key once per mapping: merge the two into one",
    ),
    "key": ("train:\n  z_dim: 3\n  epochs: 2\n  z_dim: 4\n", "line 4: duplicate key z_dim (first at line 2)"),
    "in_a_flow_mapping": (
        "sweep:\n  space:\n    z_dim: {low: 2, high: 8, low: 3}\n",
        "line 3: duplicate key low (first at line 3)",
    ),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_a_key_written_twice_names_the_key_and_both_lines(tmp_path: Path, case: str) -> None:
    content, expected = DUPLICATES[case]
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {expected}")
    assert "\n" not in str(caught.value)


def test_a_merged_mapping_may_be_overridden_key_by_key(tmp_path: Path) -> None:
    # `<<:` brings keys that the mapping's own replace, by YAML's merge rule: that is not a key written twice.
    path = tmp_path / "params.yaml"
    path.write_text("sweep:\n  space:\n    z_dim: &range {low: 2, high: 8}\n    batch_size: {<<: *range, high: 16}\n")
    assert load_config(path).sweep.space["batch_size"].high == 16


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("stage", ["download", "preprocess", "train", "evaluate"])
def test_stage_entry_prints_one_line_and_exits_2(project_root: Path, tmp_path: Path, stage: str) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  z_dim: 0\n")
    done = subprocess.run(
        [sys.executable, str(project_root / "pipeline" / f"{stage}.py"), "--params", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"vaelab: error: {bad}: train.z_dim: Input should be greater than or equal to 1; received 0"
    ]
    assert "Traceback" not in done.stderr


def test_set_override_is_validated_like_the_file(project_root: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "download", "--params", str(project_root / "params.yaml"), "--set", "data.val_fraction=2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "vaelab: error: override: data.val_fraction: Input should be less than 1; received 2"


BAD_SPACES = [
    ({"z_dim": {"low": 64, "high": 2}}, "sweep.space.z_dim: low must not exceed high; received low=64, high=2"),
    ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "sweep.space.learning_rate: a log-scale range needs low > 0; received low=0"),
    (
        {"zdim": {"low": 2, "high": 8}},
        "sweep.space: cannot search 'zdim'; searchable train keys: z_dim, r_loss_factor, learning_rate, lr_decay, dropout_rate, batch_size",
    ),
    ({}, "sweep.space: the search space is empty; give at least one train.* key with low and high"),
    ({"z_dim": {"low": 2}}, "sweep.space.z_dim.high: Field required"),
]


@pytest.mark.parametrize(("space", "message"), BAD_SPACES, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_SPACES)])
def test_bad_search_space(project_root: Path, space: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", {"sweep.space": space})
    assert str(caught.value).startswith(f"override: {message}")


def test_a_folder_param_naming_a_file_is_refused(project_root: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", {"paths.processed": str(a_file)})
    assert str(caught.value) == f"override: paths.processed: must name a folder, but {a_file} is not one; received {str(a_file)!r}"


def test_a_path_through_a_file_is_refused(project_root: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    inside = a_file / "models" / "vae.keras"
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", {"paths.model": str(inside)})
    assert str(caught.value) == (
        f"override: paths.model: {a_file} is not a folder, so nothing can be made inside it; received {str(inside)!r}"
    )


def test_a_file_param_naming_a_folder_is_refused(project_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(project_root / "params.yaml", {"paths.metrics": str(tmp_path)})
    assert str(caught.value) == f"override: paths.metrics: must name a file, but {tmp_path} is a folder; received {str(tmp_path)!r}"


def test_image_dir_is_checked_only_when_it_is_read(project_root: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    assert load_config(project_root / "params.yaml", {"data.image_dir": str(a_file)}).data.image_dir == a_file  # mnist
    with pytest.raises(ConfigError, match=r"^override: data\.image_dir: must name a folder, but .* is not one"):
        load_config(project_root / "params.yaml", {"data.image_dir": str(a_file), "data.dataset": "image_folder"})


# A 4x4 RGB image folder and a one-layer VAE, small enough to count by hand (vaelab.sizes.vae_size):
#   encoder conv 3x3, 3 -> 2 channels, stride 2:  9*3*2 + 2 = 56 weights, output 2x2x2 = 8 (and 8 after LeakyReLU)
#   mu and log_var from the 8 flat numbers:      2 * (8z + z) = 18z weights, outputs z, z and the sampled z
#   decoder Dense z -> 8:                        8z + 8 weights, output 8
#   decoder conv-transpose 3x3, 2 -> 3, stride 2: 9*2*3 + 3 = 57 weights, output 4x4x3 = 48
# weights = 121 + 26z; outputs per image = 48 (input) + 8 + 8 + 3z + 8 + 48 = 120 + 3z;
# training needs 16 * weights + 4 * batch * outputs = 1936 + 416z + 480 batch + 12 z batch bytes.
TINY_VAE = {
    "data.dataset": "image_folder",
    "data.image_size": 4,
    "train.encoder_filters": [2],
    "train.encoder_kernels": [3],
    "train.encoder_strides": [2],
    "train.decoder_filters": [3],
    "train.decoder_kernels": [3],
    "train.decoder_strides": [2],
}
MEMORY = 10**8


def test_vae_size_counted_by_hand() -> None:
    shape = image_shape("image_folder", 4)
    assert shape == (4, 4, 3)
    size = vae_size(
        shape,
        z_dim=5,
        encoder=[(2, 3, 2)],
        decoder=[(3, 3, 2)],
        batch_norm=False,
        dropout=False,
    )
    assert (size.weights, size.trainable, sum(size.outputs)) == (121 + 26 * 5, 121 + 26 * 5, 120 + 3 * 5)
    assert size.training_bytes(10) == 1936 + 416 * 5 + 480 * 10 + 12 * 5 * 10


def test_iwae_draws_and_vamp_pseudo_images_counted_by_hand() -> None:
    # The same VAE, z = 5, with 3 IWAE draws and 2 pseudo-images. Per image the input and the convolution's two
    # outputs (48 + 8 + 8 = 64) are made once, everything from the latent heads on (3z + 8 + 48 = 71) once per
    # draw; the 2 pseudo-images (48 trainable pixels each) pass the encoder's 64 once per step, whatever the batch.
    size = vae_size((4, 4, 3), z_dim=5, encoder=[(2, 3, 2)], decoder=[(3, 3, 2)], batch_norm=False, dropout=False, draws=3, pseudo_images=2)
    assert (size.weights, size.trainable, sum(size.outputs)) == (251 + 2 * 48, 251 + 2 * 48, 135)
    assert size.training_bytes(10) == 16 * (251 + 96) + 4 * (10 * (64 + 3 * 71) + 2 * 64)
    assert size.inference_bytes(10) == vae_size((4, 4, 3), 5, [(2, 3, 2)], [(3, 3, 2)], False, False).inference_bytes(10) + 4 * 96


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # batch 10: 6736 + 536z <= 10**8 up to z = 186554 (6736 + 536 * 186555 = 100000216)
        ({"train.batch_size": 10, "train.z_dim": 10**6}, "train.z_dim: must be at most 186554 to fit"),
        # z 2: 2768 + 504 batch <= 10**8 up to batch = 198407 (2768 + 504 * 198408 = 100000400)
        ({"train.z_dim": 2, "train.batch_size": 10**6}, "train.batch_size: must be at most 198407 to fit"),
        # A trial with z at the range's high end must fit too.
        (
            {"train.batch_size": 10, "sweep.space": {"z_dim": {"low": 2, "high": 10**6, "log": True}}},
            "sweep.space.z_dim.high: must be at most 186554 to fit",
        ),
        # Neither alone can fit: 12 * 10**18 bytes for z times batch, the rest is small; 1.2e19 / 2**30 = 1.12e10 GiB.
        ({"train.z_dim": 10**9, "train.batch_size": 10**9}, "train: needs at least 1.12e+10 GiB of memory, more than"),
    ],
    ids=["z_dim", "batch_size", "sweep_high", "both"],
)
def test_sizes_are_bounded_by_memory(monkeypatch: pytest.MonkeyPatch, overrides: dict, message: str) -> None:
    monkeypatch.setattr(sizes_module, "physical_memory_bytes", lambda: MEMORY)
    with pytest.raises(ConfigError) as caught:
        with_overrides(Config(), {**TINY_VAE, **overrides})
    assert str(caught.value).startswith(f"override: {message}")
    assert "\n" not in str(caught.value)


def test_the_largest_fitting_size_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizes_module, "physical_memory_bytes", lambda: MEMORY)
    # Evaluation's batch and prior samples scale with z_dim too; kept at one so only training's bound is met.
    largest = {"train.batch_size": 10, "train.z_dim": 186554, "evaluate.batch_size": 1, "evaluate.quality_samples": 1}
    assert with_overrides(Config(), {**TINY_VAE, **largest}).train.z_dim == 186554


def test_no_memory_figure_refuses_no_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizes_module, "physical_memory_bytes", lambda: None)
    assert with_overrides(Config(), {"train.z_dim": 10**30}).train.z_dim == 10**30
