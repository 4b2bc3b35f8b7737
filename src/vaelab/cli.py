"""Command-line entry points: `vaelab <stage>` and the thin modules in pipeline/.

User mistakes (:class:`VaelabError`) end with one line on stderr and exit code 2; Ctrl-C with
exit code 130. Anything else is a bug and keeps its traceback. Every command sets up its output with
:mod:`vaelab.logs` before anything loads TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from vaelab import logs, stages  # stages imports its heavy libraries inside each stage function
from vaelab.cli_common import add_config_arguments, config_from_args, run_guarded
from vaelab.config.load import load_config
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, VaelabError

# stage name -> (its function, one-line help)
STAGES: dict[str, tuple[Callable[[Config], object], str]] = {
    "download": (stages.run_download, "fetch the dataset named by data.dataset into paths.raw, checksums verified"),
    "preprocess": (stages.run_preprocess, "scale, shape and split the raw data into paths.processed"),
    "train": (stages.run_train, "train the VAE, logging one MLflow run; resumes an interrupted training"),
    "classifier": (stages.run_classifier, "train the small CNN that judges generated samples (paths.classifier)"),
    "evaluate": (stages.run_evaluate, "test-set metrics and pictures, added to the training's MLflow run"),
}


def stage_main(stage: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of pipeline/<stage>.py: parse --params/--set, load the config, run the stage."""
    args = _stage_parser(stage).parse_args(argv)
    logs.configure(verbose=args.verbose)
    sys.exit(run_guarded(lambda: _run_stage(stage, config_from_args(args))))


def train_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of pipeline/train.py: the train stage, on ``--workers N`` processes of this machine if asked."""
    parser = _stage_parser("train")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="train on N processes of this machine as one TensorFlow cluster (MultiWorkerMirroredStrategy on "
        "127.0.0.1 ports; the global batch stays train.batch_size); for several machines see the README (default: 1)",
    )
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose)
    if args.workers == 1:
        sys.exit(run_guarded(lambda: _run_stage("train", config_from_args(args))))
    exit_codes: list[int] = []
    failed = run_guarded(lambda: exit_codes.append(_launch_workers(config_from_args(args), args)))
    sys.exit(failed or exit_codes[0])


def _stage_parser(stage: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"pipeline/{stage}.py", description=STAGES[stage][1])
    add_config_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="prefix log lines with level and module")
    return parser


def _run_stage(stage: str, config: Config) -> None:
    STAGES[stage][0](config)


def _launch_workers(config: Config, args: argparse.Namespace) -> int:
    from vaelab.workers import launch_training

    if os.environ.get("TF_CONFIG"):
        raise ConfigError("--workers starts its own cluster on this machine, but TF_CONFIG is set: unset TF_CONFIG or drop --workers")
    stage_args = ["--params", args.params, *(item for override in args.overrides for item in ("--set", override))]
    return launch_training(config, args.workers, [*stage_args, *(["--verbose"] if args.verbose else [])])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    # Each worker is a whole TensorFlow process; beyond a few per core they only crowd each other out.
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers from 1 to {most} (4 per CPU core here), got {text!r}")
    return value


COMPARE_HELP = "chosen metrics of an experiment's MLflow runs side by side: a table, compare.png and compare.html"


def compare_main(argv: Sequence[str] | None = None) -> None:
    """`vaelab compare [--experiment NAME] [--metrics a,b] [--out DIR]`: print the table, write the report."""
    parser = argparse.ArgumentParser(prog="vaelab compare", description=COMPARE_HELP)
    parser.add_argument("--params", default="params.yaml", help="params file naming the experiment (default: %(default)s)")
    parser.add_argument("--experiment", help="MLflow experiment name (default: base.experiment in --params)")
    parser.add_argument(
        "--metrics", help="comma-separated metric names (default: NLL and negative ELBO as --params names them, sample FID, 5-NN accuracy)"
    )
    parser.add_argument("--out", default="reports/compare", help="folder for compare.csv, .png and .html (default: %(default)s)")
    args = parser.parse_args(argv)
    logs.configure()

    def action() -> None:
        from pathlib import Path

        from vaelab.compare import compare, default_metrics

        # --experiment works without a params file; the file, when there, names the default metrics (K, data).
        config = load_config(args.params) if args.experiment is None or Path(args.params).is_file() else Config()
        metrics = [name.strip() for name in (args.metrics or ",".join(default_metrics(config))).split(",") if name.strip()]
        if not metrics:
            raise VaelabError(f"--metrics {args.metrics!r}: give at least one metric name, e.g. --metrics test_nll_k100_binarized_nats")
        experiment = args.experiment or config.base.experiment
        table = compare(experiment, metrics, args.out)
        print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
        print(f"wrote compare.csv, compare.png and compare.html to {args.out}")

    sys.exit(run_guarded(action))


def preset_main(argv: Sequence[str]) -> None:
    from vaelab import presets

    codes: list[int] = []
    exit_code = run_guarded(lambda: codes.append(presets.main(argv)))
    sys.exit(exit_code or (codes[0] if codes else 0))


# The tools import their module when run, so `vaelab --help` loads neither Optuna nor MLflow.
def sweep_main(argv: Sequence[str]) -> None:
    from vaelab.sweep.coordinator import main as run

    run(argv)


def ui_main(argv: Sequence[str]) -> None:
    from vaelab.ui_command import main as run

    run(argv)


def dashboard_main(argv: Sequence[str]) -> None:
    from vaelab.dashboard_command import main as run

    run(argv)


def promote_main(argv: Sequence[str]) -> None:
    from vaelab.promote_command import main as run

    run(argv)


def generate_main(argv: Sequence[str]) -> None:
    from vaelab.generate_command import main as run

    run(argv)


def likelihood_main(argv: Sequence[str]) -> None:
    from vaelab.likelihood_command import main as run

    run(argv)


# Commands beyond the stages: name -> (one-line help, the function that takes the remaining arguments).
TOOLS: dict[str, tuple[str, Callable[[Sequence[str]], None]]] = {
    "sweep": ("an Optuna study over params.yaml `sweep.space`, tracked as MLflow parent and child runs", sweep_main),
    "promote": (
        "train, evaluate and register a study's winner through the pipeline as a DVC experiment (once)",
        promote_main,
    ),
    "compare": (COMPARE_HELP, compare_main),
    "preset": ("print a preset (presets/NAME.yaml) as `dvc exp run -S` flags, or --run it", preset_main),
    "ui": ("the MLflow UI on the tracking store; prints the address of the experiment's training runs", ui_main),
    "dashboard": ("optuna-dashboard on the sweep's study storage, with each trial's pictures; prints the study's address", dashboard_main),
    "likelihood": (
        "the paper-grade test NLL of the trained model (K = 5000 importance samples, all test images); resumable",
        likelihood_main,
    ),
    "generate": (
        "sample, reconstruct, interpolate or do latent arithmetic with any trained model (run id, models:/ URI or file)",
        generate_main,
    ),
}


def main(argv: Sequence[str] | None = None) -> None:
    """`vaelab COMMAND ...`; `vaelab COMMAND --help` for each."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        train_main(argv[1:])
        return
    if argv and argv[0] in STAGES:
        stage_main(argv[0], argv[1:])
        return
    if argv and argv[0] in TOOLS:
        logs.quiet_tensorflow()  # the tool sets up its own log format
        TOOLS[argv[0]][1](argv[1:])
        return
    parser = argparse.ArgumentParser(prog="vaelab", description="Train, track and tune the chapter-3 VAE.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in STAGES.items():
        sub.add_parser(name, help=summary)
    for name, (summary, _) in TOOLS.items():
        sub.add_parser(name, help=summary)
    parser.parse_args(argv)  # only reached for --help or an unknown command: prints and exits


if __name__ == "__main__":
    main()
