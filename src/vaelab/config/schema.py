"""The settings' schema: one frozen pydantic model per params.yaml section, and :class:`Config` holding them.

The defaults written here are the only ones: params.yaml writes the same values out for a reader, and
tests/test_config.py checks that it does. Reading a file, overrides, checks against the disk and the machine's
memory, and the wording of errors live beside this module (see :mod:`vaelab.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from vaelab.config.rules import ExperimentName, FilePath, FolderPath, KerasFilePath, PrintableText, StudyName, overlap
from vaelab.data.sources import DATASET_NAMES, IMAGE_FOLDER

PositiveInt = Annotated[StrictInt, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
# keras.utils.set_random_seed also seeds NumPy's legacy generator, which takes only seeds below 2**32.
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


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
        problem = overlap(list(self))
        if problem:
            raise ValueError(problem)
        return self


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
        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset; allowed: {', '.join(sorted(DATASET_NAMES))}")
        return name

    @model_validator(mode="after")
    def _binarize_needs_a_registered_dataset(self) -> DataSection:
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
    # The training objective (see vaelab.losses): elbo, the weighted loss above; iwae, Burda et al.'s importance-
    # weighted bound with iwae_samples draws per image, a tighter bound on -log p(x) (k = 1 is the negative ELBO).
    # iwae needs a likelihood: reconstruction bce and r_loss_factor equal to the pixels per image (checked when the
    # model is built). KL warm-up scales log p(z) - log q(z|x) inside each importance weight.
    loss: Literal["elbo", "iwae"] = "elbo"
    iwae_samples: PositiveInt = 1
    # The prior p(z): normal, N(0, I); vamp, Tomczak & Welling's VampPrior, the uniform mixture of q(z|u) over
    # vamp_components trainable pseudo-images u. Its KL term is the one-sample estimate log q(z|x) - log p(z).
    prior: Literal["normal", "vamp"] = "normal"
    vamp_components: PositiveInt = 500

    @model_validator(mode="after")
    def _layer_lists_agree(self) -> TrainSection:
        for part in ("encoder", "decoder"):
            lengths = {k: len(getattr(self, f"{part}_{k}")) for k in ("filters", "kernels", "strides")}
            if len(set(lengths.values())) != 1 or 0 in lengths.values():
                shown = ", ".join(f"{part}_{k} has {n}" for k, n in lengths.items())
                raise ValueError(f"{part} layer lists must have the same non-zero length; {shown}")
        return self

    @model_validator(mode="after")
    def _iwae_has_a_likelihood(self) -> TrainSection:
        if self.loss == "iwae" and self.reconstruction != "bce":
            raise ValueError(
                f"loss iwae weighs each draw by its likelihood, which reconstruction {self.reconstruction!r} is not; "
                "set reconstruction: bce (or loss: elbo)"
            )
        if self.loss == "elbo" and self.iwae_samples > 1:
            raise ValueError(f"iwae_samples={self.iwae_samples} counts only with loss: iwae; set loss: iwae or iwae_samples: 1")
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

_SEARCHABLE = (
    "z_dim",
    "r_loss_factor",
    "learning_rate",
    "lr_decay",
    "dropout_rate",
    "batch_size",
    "kl_warmup_epochs",
    "iwae_samples",
    "vamp_components",
)
# What a sweep can minimise (see vaelab.sweep.scores): the validation NLL, the VAE's trainable parameter count,
# and the classifier-feature FID of its prior samples against the validation images.
OBJECTIVES = ("val_nll", "params", "sample_fid")


class SweepSection(_Section):
    """An Optuna study over train.* keys; see vaelab.sweep."""

    study_name: StudyName = "vae-mnist"
    # Optuna storage URL (postgresql://...) or journal file path; null = sweeps/optuna.journal, safe for several
    # local workers. VAELAB_OPTUNA_STORAGE overrides both.
    storage: PrintableText | None = None
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
    # Before the last epoch a trial is scored, for the pruner only, on the first this many of the evaluate.nll_images
    # validation images (same K, same draws): a fraction of the cost. Its last epoch always gets the full estimate,
    # the value the study optimises. null = the full estimate after every epoch. bench/intermediate_nll.json.
    pruning_nll_images: PositiveInt | None = 200
    # Each worker process runs this many trials, then a fresh process takes its place: every Keras fit() leaves
    # graphs behind that TensorFlow never frees, so a long-lived process grows by each trial (26-39 MB), while a
    # fresh process costs seconds of start-up (bench/objective_cost.json). null = no limit.
    trials_per_process: PositiveInt | None = 4
    # What trials are scored by, all minimised. Several make a multi-objective study with a Pareto front, which
    # Optuna cannot prune (the pruner keys are then unused); choose_by and choose_limits pick its winner.
    objectives: tuple[str, ...] = ("val_nll",)
    choose_by: str | None = None  # the winner is the front's lowest in this objective; null = the first one
    choose_limits: dict[str, float] = Field(default_factory=dict)  # objective -> upper bound the winner must keep
    space: dict[str, SearchRange] = Field(
        default_factory=lambda: {
            "z_dim": SearchRange(low=2, high=64, log=True),
            "r_loss_factor": SearchRange(low=100, high=10000, log=True),
            "learning_rate": SearchRange(low=1e-4, high=3e-3, log=True),
        }
    )

    @model_validator(mode="after")
    def _pruning_can_start(self) -> SweepSection:
        # Only a study of the validation NLL alone is pruned (vaelab.sweep.storage.prunes).
        if self.pruner != "none" and self.objectives == ("val_nll",) and self.pruner_min_epochs > self.epochs:
            raise ValueError(
                f"pruner_min_epochs must be at most epochs, or the {self.pruner} pruner could prune no trial; "
                f"received pruner_min_epochs={self.pruner_min_epochs}, epochs={self.epochs} (or set pruner: none)"
            )
        return self

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: tuple[str, ...]) -> tuple[str, ...]:
        if not objectives:
            raise ValueError(f"give at least one objective; allowed: {', '.join(OBJECTIVES)}")
        for name in objectives:
            if name not in OBJECTIVES:
                raise ValueError(f"unknown objective {name!r}; allowed: {', '.join(OBJECTIVES)}")
            if objectives.count(name) > 1:
                raise ValueError(f"objective {name!r} is named twice; name each once")
        return objectives

    @model_validator(mode="after")
    def _choice_names_objectives(self) -> SweepSection:
        for key, name in [("choose_by", self.choose_by), *(("choose_limits", name) for name in self.choose_limits)]:
            if name is not None and name not in self.objectives:
                raise ValueError(f"{key} names {name!r}, which is not one of sweep.objectives ({', '.join(self.objectives)})")
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
