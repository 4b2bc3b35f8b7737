"""The one place that reads params.yaml: a typed, frozen config with one-line errors.

Every stage, test and sweep gets its settings from :func:`load_config`. Unknown keys, wrong
types and out-of-range values raise :class:`~vaelab.errors.ConfigError` whose message names
the key, the value received and what is allowed. Sizes are also bounded by this machine's
memory (see "Sizes the machine can hold" below), and :func:`load_config` checks each path
against what already exists on disk.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import unicodedata
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePath
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from vaelab.errors import ConfigError, first_line
from vaelab.sizes import memory_error

DEFAULT_PARAMS = Path("params.yaml")

PositiveInt = Annotated[StrictInt, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
# keras.utils.set_random_seed also seeds NumPy's legacy generator, which takes only seeds below 2**32.
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


def _first_control_character(text: str) -> str | None:
    # Cc: NUL (which every OS call refuses), line breaks (which would split a one-line error) and escapes;
    # Cf: invisible ones, such as a right-to-left override that makes a name read as another.
    return next((char for char in text if unicodedata.category(char) in ("Cc", "Cf")), None)


def _printable(value: Any) -> Any:
    """Text that names something: not blank, no control characters. Other types pass on to the field's own check."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        raise ValueError("must not be empty or blank")
    bad = _first_control_character(value)
    if bad is not None:
        raise ValueError(f"must not contain control or invisible characters such as {bad!r}")
    return value


def _file_path(value: Any) -> Any:
    value = _printable(value)
    # A trailing "/" or a last part ".." names a folder; Path() would quietly drop the slash.
    if isinstance(value, str) and (value.endswith(("/", os.sep)) or PurePath(value).name in ("", "..")):
        raise ValueError("must name a file, but names a folder")
    return value


def _keras_file_path(value: Any) -> Any:
    value = _file_path(value)
    if isinstance(value, str) and PurePath(value).suffix != ".keras":
        raise ValueError("must end in .keras, the format Keras 3 saves and the evaluate stage loads")
    return value


FolderPath = Annotated[Path, BeforeValidator(_printable)]
FilePath = Annotated[Path, BeforeValidator(_file_path)]
KerasFilePath = Annotated[Path, BeforeValidator(_keras_file_path)]

# MLflow's registry keeps a model's name in a String(256) column, and vaelab names the model
# "<experiment>-<dataset>" (vaelab.tracking.registry): the experiment gets what the longest dataset name leaves.
REGISTERED_MODEL_NAME_MAX = 256
# sweep.study_name also names the folder sweeps/<study_name>/; a file name holds at most 255 bytes (NAME_MAX).
FILE_NAME_MAX_BYTES = 255


def _name(value: str) -> str:
    """An experiment or study name: printable, no surrounding spaces, and usable as one folder's name."""
    _printable(value)
    if value != value.strip():
        raise ValueError("must not start or end with white space, which would make it look like another name")
    if "/" in value or "\\" in value:
        raise ValueError("must not contain / or \\: the name also names a folder (mlartifacts/, sweeps/)")
    if value in (".", ".."):
        raise ValueError("must not be . or .., which name folders that already exist")
    return value


def _experiment_name(value: str) -> str:
    from vaelab.data.sources import DATASET_NAMES  # light import: no network or TensorFlow

    # "-binarized": the suffix of models of binarized data (vaelab.tracking.registry).
    longest = REGISTERED_MODEL_NAME_MAX - len("-") - max(len(name) for name in DATASET_NAMES) - len("-binarized")
    if len(value) > longest:
        raise ValueError(
            f"must be at most {longest} characters, not {len(value)}: the registered model "
            f"<experiment>-<dataset>-binarized gets at most {REGISTERED_MODEL_NAME_MAX}"
        )
    return value


def _file_name_length(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size > FILE_NAME_MAX_BYTES:
        raise ValueError(f"must be at most {FILE_NAME_MAX_BYTES} bytes in UTF-8, not {size}: it names a folder")
    return value


ExperimentName = Annotated[str, AfterValidator(_name), AfterValidator(_experiment_name)]
StudyName = Annotated[str, AfterValidator(_name), AfterValidator(_file_name_length)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BaseSection(_Section):
    seed: Seed = 42
    experiment: ExperimentName = "vaelab-mnist"


class PathsSection(_Section):
    """Where each stage reads and writes; dvc.yaml interpolates the same keys."""

    # The folder params; the others name files.
    FOLDERS: ClassVar[tuple[str, ...]] = ("raw", "processed", "plots", "checkpoints", "classifier")

    raw: FolderPath = Path("data/raw")
    processed: FolderPath = Path("data/processed")
    model: KerasFilePath = Path("models/vae.keras")
    run_info: FilePath = Path("models/mlflow_run.json")
    history: FilePath = Path("reports/history.csv")
    metrics: FilePath = Path("reports/metrics.json")
    plots: FolderPath = Path("reports/plots")
    checkpoints: FolderPath = Path("checkpoints")
    classifier: FolderPath = Path("models/classifier")  # a folder: classifier.keras, or NO_LABELS.txt
    classifier_metrics: FilePath = Path("reports/classifier_metrics.json")

    @model_validator(mode="after")
    def _apart(self) -> PathsSection:
        # DVC refuses overlapping outputs, but a stage run directly would overwrite or delete another's files.
        named = [(key, str(path), os.path.normpath(path)) for key, path in self]
        for key, written, path in named:
            for other, other_written, other_path in named:
                if other != key and (path == other_path or _inside(path, other_path)):
                    relation = "is the same path as" if path == other_path else "lies inside"
                    raise ValueError(f"{key} ({written!r}) {relation} {other} ({other_written!r}); give each its own place")
        return self


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies below ``folder``, as written (no file system lookups; both normalised)."""
    if folder == os.curdir:
        return not os.path.isabs(path) and path != os.pardir and not path.startswith(os.pardir + os.sep)
    return path.startswith(folder.rstrip(os.sep) + os.sep)


class DataSection(_Section):
    dataset: str = "mnist"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    # Caps on split sizes for quick experiments and tests; null keeps everything.
    max_train: PositiveInt | None = None
    max_test: PositiveInt | None = None
    # dataset image_folder only (see vaelab.data.folder): the folder, the square size images are resized
    # to (RGB), the crop before resizing, and the share of the folder held out as the test set.
    image_dir: FolderPath = Path("images")
    image_size: Annotated[StrictInt, Field(ge=4, le=1024)] = 64
    crop: Literal["square", "celeba"] = "square"
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    # Bernoulli-sampled pixels (see vaelab.data.binarize): none keeps the grayscale values; dynamic draws the
    # training images' bits afresh at every read and stores fixed bits for validation and test; fixed stores
    # fixed bits for every split. Likelihoods in the literature are measured on binarized data.
    binarize: Literal["none", "dynamic", "fixed"] = "none"

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from vaelab.data.sources import DATASET_NAMES  # light import: no network or TensorFlow

        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset; allowed: {', '.join(sorted(DATASET_NAMES))}")
        return name

    @model_validator(mode="after")
    def _binarize_needs_a_registered_dataset(self) -> DataSection:
        from vaelab.data.sources import IMAGE_FOLDER

        if self.binarize != "none" and self.dataset == IMAGE_FOLDER:
            raise ValueError(
                f"binarize {self.binarize!r} needs a registered dataset such as mnist or fashion_mnist; "
                "an image folder keeps binarize: none"
            )
        return self


class TrainSection(_Section):
    z_dim: PositiveInt = 2
    encoder_filters: tuple[PositiveInt, ...] = (32, 64, 64, 64)
    encoder_kernels: tuple[PositiveInt, ...] = (3, 3, 3, 3)
    encoder_strides: tuple[PositiveInt, ...] = (1, 2, 2, 1)
    # The chapter's form: the last entry is the number of image channels.
    decoder_filters: tuple[PositiveInt, ...] = (64, 64, 32, 1)
    decoder_kernels: tuple[PositiveInt, ...] = (3, 3, 3, 3)
    decoder_strides: tuple[PositiveInt, ...] = (1, 2, 2, 1)
    use_batch_norm: StrictBool = False
    dropout_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    reconstruction: Literal["mse", "bce"] = "mse"
    r_loss_factor: PositiveFloat = 1000.0
    learning_rate: PositiveFloat = 0.0005
    lr_decay: Annotated[float, Field(gt=0, le=1)] = 1.0
    # The KL term's weight rises linearly from 0 to 1 over this many epochs (KL warm-up); 0 = weight 1 throughout.
    kl_warmup_epochs: Annotated[StrictInt, Field(ge=0)] = 0
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 10
    # auto: mixed bfloat16 where the hardware has it natively, else float32 (see vaelab.precision).
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"

    @model_validator(mode="after")
    def _layer_lists_agree(self) -> TrainSection:
        for part in ("encoder", "decoder"):
            lengths = {k: len(getattr(self, f"{part}_{k}")) for k in ("filters", "kernels", "strides")}
            if len(set(lengths.values())) != 1 or 0 in lengths.values():
                shown = ", ".join(f"{part}_{k} has {n}" for k, n in lengths.items())
                raise ValueError(f"{part} layer lists must have the same non-zero length; {shown}")
        return self


class EvaluateSection(_Section):
    batch_size: PositiveInt = 1000
    n_reconstructions: Annotated[StrictInt, Field(ge=1, le=50)] = 10
    sample_grid: Annotated[StrictInt, Field(ge=1, le=32)] = 8
    manifold_grid: Annotated[StrictInt, Field(ge=2, le=40)] = 15
    latent_points: PositiveInt = 5000
    # Importance-sampled test NLL: nll_samples draws from q(z|x) per image, on a seeded subset of
    # nll_images test images (null = all), since its cost is images x samples decoder passes.
    nll_samples: PositiveInt = 100
    nll_images: PositiveInt | None = 1000
    quality_samples: PositiveInt = 10000  # prior samples scored by the classifier (FID, confidence, entropy)


class ClassifierSection(_Section):
    """The small CNN whose features and predictions judge the VAE's samples; see vaelab.evaluation.classifier."""

    filters: tuple[PositiveInt, ...] = (32, 64)
    feature_units: PositiveInt = 128
    dropout_rate: Annotated[float, Field(ge=0, lt=1)] = 0.3
    learning_rate: PositiveFloat = 0.001
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 4


class SearchRange(_Section):
    low: float
    high: float
    log: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low > self.high:
            raise ValueError(f"low must not exceed high; received low={self.low:g}, high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0; received low={self.low:g}")
        return self


# meta.json key -> the param it records (see vaelab.data.preprocess; the last three only for an image folder).
_RECORDED_PARAMS = {
    "dataset": "data.dataset",
    "seed": "base.seed",
    "val_fraction": "data.val_fraction",
    "max_train": "data.max_train",
    "max_test": "data.max_test",
    "binarize": "data.binarize",
    "test_fraction": "data.test_fraction",
    "image_size": "data.image_size",
    "crop": "data.crop",
}

_SEARCHABLE = ("z_dim", "r_loss_factor", "learning_rate", "lr_decay", "dropout_rate", "batch_size")


class SweepSection(_Section):
    """An Optuna study over train.* keys; see vaelab.sweep."""

    study_name: StudyName = "vae-mnist"
    # Optuna storage URL (postgresql://...) or journal file path; null = sweeps/optuna.journal, safe for several
    # local workers. VAELAB_OPTUNA_STORAGE overrides both.
    storage: Annotated[str, AfterValidator(_printable)] | None = None
    n_trials: PositiveInt = 16
    timeout_minutes: PositiveFloat | None = 30.0
    epochs: PositiveInt = 4
    max_train: PositiveInt | None = 10000
    sampler: Literal["tpe", "random"] = "tpe"
    # How trials are stopped early, judged by their validation value after each epoch (see vaelab.sweep.storage,
    # and bench/pruning.json for the measurements behind these defaults). The pruner_* keys a pruner does not use
    # are ignored: startup_trials and percentile by median and percentile, reduction_factor by successive_halving
    # and hyperband; min_epochs by all.
    pruner: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = "percentile"
    pruner_startup_trials: Annotated[StrictInt, Field(ge=0)] = 1  # trials finished before any is pruned
    pruner_min_epochs: PositiveInt = 1  # the first epoch after which a trial may be pruned
    # Pruned when its best value so far is worse than this percentile of the finished trials' (50 = median).
    pruner_percentile: Annotated[float, Field(gt=0, lt=100)] = 40.0
    pruner_reduction_factor: Annotated[StrictInt, Field(ge=2)] = 3  # 1 in this many trials goes on at each rung
    # Each worker process runs this many trials, then a fresh process takes its place: every Keras fit() leaves
    # graphs behind that TensorFlow never frees, so a long-lived process grows by each trial. null = no limit.
    trials_per_process: PositiveInt | None = 1
    space: dict[str, SearchRange] = Field(
        default_factory=lambda: {
            "z_dim": SearchRange(low=2, high=64, log=True),
            "r_loss_factor": SearchRange(low=100, high=10000, log=True),
            "learning_rate": SearchRange(low=1e-4, high=3e-3, log=True),
        }
    )

    @model_validator(mode="after")
    def _pruning_can_start(self) -> SweepSection:
        if self.pruner != "none" and self.pruner_min_epochs > self.epochs:
            raise ValueError(
                f"pruner_min_epochs must be at most epochs, or the {self.pruner} pruner could prune no trial; "
                f"received pruner_min_epochs={self.pruner_min_epochs}, epochs={self.epochs} (or set pruner: none)"
            )
        return self

    @field_validator("space")
    @classmethod
    def _known_parameters(cls, space: dict[str, SearchRange]) -> dict[str, SearchRange]:
        if not space:
            raise ValueError("the search space is empty; give at least one train.* key with low and high")
        for name in space:
            if name not in _SEARCHABLE:
                raise ValueError(f"cannot search {name!r}; searchable train keys: {', '.join(_SEARCHABLE)}")
        return space


class Config(_Section):
    base: BaseSection = BaseSection()
    paths: PathsSection = PathsSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    evaluate: EvaluateSection = EvaluateSection()
    classifier: ClassifierSection = ClassifierSection()
    sweep: SweepSection = SweepSection()

    def flat(self) -> dict[str, Any]:
        """``{"train.z_dim": 2, ...}``: the form MLflow params and ``dvc exp run -S`` use."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out

    def split_settings(self) -> dict[str, tuple[str, Any]]:
        """What preprocess records in meta.json for these params: its key -> (the param, the value)."""
        flat = self.flat()
        return {name: (key, flat[key]) for name, key in _RECORDED_PARAMS.items()}

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A new config with dotted keys replaced, validated like params.yaml."""
        return _validate(_apply_overrides(self.model_dump(mode="json"), overrides), "override")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Parse a params file into plain data; every failure is a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the project root or pass --params") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err, 1000)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except ValueError as err:  # what PyYAML reads as a date or number but cannot be one: 2020-13-45, 10**5000
        reason = str(err).split(";")[0]
        raise ConfigError(f"{path}: invalid YAML: a date or number that cannot be read ({reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: lists or mappings nested too deeply to read") from None
    if raw is None:
        raise ConfigError(f"{path}: file is empty; expected sections {', '.join(Config.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, received {type(raw).__name__}")
    return raw


def load_config(path: Path | str = DEFAULT_PARAMS, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load and validate params.yaml, optionally with dotted-key overrides (``{"train.epochs": 1}``).

    Besides the checks of :class:`Config`, each path must agree with what already exists: a folder param
    must not name a file, a file param not a folder, and no path may lead through a file.
    """
    raw = read_params(path)
    if overrides:
        raw = _apply_overrides(raw, overrides)
    overridden = set(overrides or ())
    config = _validate(raw, str(path), overridden)
    error = _path_on_disk_error(config)
    if error:
        raise _config_error(error, str(path), overridden)
    return config


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r}: expected section.key, e.g. train.z_dim")
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {dotted!r}: section {section!r} is not a mapping")
        target[key] = value
    return merged


def _validate(raw: dict[str, Any], source: str, overridden: AbstractSet[str] = frozenset()) -> Config:
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        raise _config_error(err.errors()[0], source, overridden) from None
    error = memory_error(config)
    if error:
        raise _config_error(error, source, overridden)
    return config


def _path_on_disk_error(config: Config) -> dict[str, Any] | None:
    """The first path param that what exists on disk contradicts, as a pydantic-style error; else None."""
    from vaelab.data.sources import IMAGE_FOLDER

    wanted = [(("paths", key), path, key in PathsSection.FOLDERS) for key, path in config.paths]
    if config.data.dataset == IMAGE_FOLDER:
        wanted.append((("data", "image_dir"), config.data.image_dir, True))
    for loc, path, folder in wanted:
        problem = _disk_problem(path, folder)
        if problem:
            return {"loc": loc, "msg": problem, "input": str(path)}
    return None


def _disk_problem(path: Path, folder: bool) -> str | None:
    # os.path's checks answer False where pathlib's would raise (e.g. a folder without search permission).
    for parent in reversed(path.parents):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return f"{parent} is not a folder, so nothing can be made inside it"
    if folder and os.path.lexists(path) and not os.path.isdir(path):
        return f"must name a folder, but {path} is not one"
    if not folder and os.path.isdir(path):
        return f"must name a file, but {path} is a folder"
    return None


def _config_error(error: Mapping[str, Any], source: str, overridden: AbstractSet[str]) -> ConfigError:
    key = ".".join(str(part) for part in error["loc"][:2])
    if any(o == key or o.startswith(f"{key}.") for o in overridden):  # from --set, not the file
        source = "override"
    return ConfigError(f"{source}: {_describe(error)}")


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error.get("type") == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key {key}; allowed keys here: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    received = error.get("input")
    if isinstance(received, float) and not math.isfinite(received):
        message = "must be a finite number"
    if isinstance(received, dict):  # a check across several keys: the message names them
        return f"{key}: {message}"
    return f"{key}: {message}; received {_shown(received)}"


# A received value is shown in full up to a few hundred characters: YAML aliases let a small file hold
# billions of list items, which a plain repr would spell out (and take minutes and gigabytes doing it).
SHOWN_MAX = 300
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = SHOWN_MAX
_SHORT.maxlong = 100
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 8


def _shown(value: Any) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(model.model_fields)
