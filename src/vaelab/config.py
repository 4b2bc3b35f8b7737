"""The one place that reads params.yaml: a typed, frozen config with one-line errors.

Every stage, test and sweep gets its settings from :func:`load_config`. Unknown keys, wrong
types and out-of-range values raise :class:`~vaelab.errors.ConfigError` whose message names
the key, the value received and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from vaelab.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")

PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BaseSection(_Section):
    seed: NonNegativeInt = 42
    experiment: Annotated[str, Field(min_length=1)] = "vaelab-mnist"


class PathsSection(_Section):
    """Where each stage reads and writes; dvc.yaml interpolates the same keys."""

    raw: Path = Path("data/raw")
    processed: Path = Path("data/processed")
    model: Path = Path("models/vae.keras")
    run_info: Path = Path("models/mlflow_run.json")
    history: Path = Path("reports/history.csv")
    metrics: Path = Path("reports/metrics.json")
    plots: Path = Path("reports/plots")
    checkpoints: Path = Path("checkpoints")
    classifier: Path = Path("models/classifier")  # a folder: classifier.keras, or NO_LABELS.txt
    classifier_metrics: Path = Path("reports/classifier_metrics.json")


class DataSection(_Section):
    dataset: str = "mnist"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    # Caps on split sizes for quick experiments and tests; null keeps everything.
    max_train: PositiveInt | None = None
    max_test: PositiveInt | None = None
    # dataset image_folder only (see vaelab.data.folder): the folder, the square size images are resized
    # to (RGB), the crop before resizing, and the share of the folder held out as the test set.
    image_dir: Path = Path("images")
    image_size: Annotated[StrictInt, Field(ge=4, le=1024)] = 64
    crop: Literal["square", "celeba"] = "square"
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from vaelab.data.sources import DATASET_NAMES  # light import: no network or TensorFlow

        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset; allowed: {', '.join(sorted(DATASET_NAMES))}")
        return name


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
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 10

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
    """The small CNN whose features and predictions judge the VAE's samples; see vaelab.classifier."""

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


_SEARCHABLE = ("z_dim", "r_loss_factor", "learning_rate", "lr_decay", "dropout_rate", "batch_size")


class SweepSection(_Section):
    """An Optuna study over train.* keys; see vaelab.sweep."""

    study_name: Annotated[str, Field(min_length=1)] = "vae-mnist"
    # Optuna storage URL (postgresql://...) or journal file path; null = sweeps/optuna.journal, safe for several
    # local workers. VAELAB_OPTUNA_STORAGE overrides both.
    storage: str | None = None
    n_trials: PositiveInt = 16
    timeout_minutes: PositiveFloat | None = 30.0
    epochs: PositiveInt = 4
    max_train: PositiveInt | None = 10000
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    space: dict[str, SearchRange] = Field(
        default_factory=lambda: {
            "z_dim": SearchRange(low=2, high=64, log=True),
            "r_loss_factor": SearchRange(low=100, high=10000, log=True),
            "learning_rate": SearchRange(low=1e-4, high=3e-3, log=True),
        }
    )

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
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: file is empty; expected sections {', '.join(Config.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, received {type(raw).__name__}")
    return raw


def load_config(path: Path | str = DEFAULT_PARAMS, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load and validate params.yaml, optionally with dotted-key overrides (``{"train.epochs": 1}``)."""
    raw = read_params(path)
    if overrides:
        raw = _apply_overrides(raw, overrides)
    return _validate(raw, str(path), overridden=set(overrides or ()))


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


def _validate(raw: dict[str, Any], source: str, overridden: set[str] = frozenset()) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        error = err.errors()[0]
        key = ".".join(str(part) for part in error["loc"][:2])
        if any(o == key or o.startswith(f"{key}.") for o in overridden):  # from --set, not the file
            source = "override"
        raise ConfigError(f"{source}: {_describe(error)}") from None


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key {key}; allowed keys here: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    received = error.get("input")
    if isinstance(received, float) and not math.isfinite(received):
        message = "must be a finite number"
    if isinstance(received, dict):  # a check across several keys: the message names them
        return f"{key}: {message}"
    return f"{key}: {message}; received {received!r}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(model.model_fields)
