"""`vaelab ui`: print the address of the experiment's training runs in the MLflow UI, then run the UI.

Kept apart from :mod:`vaelab.tracking.ui` so that ``--help`` answers without loading MLflow and Keras.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vaelab import logs
from vaelab.cli_common import run_guarded

DESCRIPTION = "the MLflow UI on the tracking store; prints the address of the experiment's training runs"


def main(argv: Sequence[str] | None = None) -> None:
    """`vaelab ui [--experiment NAME] [--host H] [--port N] [--print-only]`."""
    parser = argparse.ArgumentParser(prog="vaelab ui", description=DESCRIPTION)
    parser.add_argument("--params", default="params.yaml", help="params file naming the experiment (default: %(default)s)")
    parser.add_argument("--experiment", help="MLflow experiment name (default: base.experiment in --params)")
    parser.add_argument("--host", default="127.0.0.1", help="address `mlflow ui` listens on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port `mlflow ui` listens on (default: %(default)s)")
    parser.add_argument("--print-only", action="store_true", help="give the experiment its view and print the address; start no UI")
    args = parser.parse_args(argv)
    logs.configure()
    sys.exit(run_guarded(lambda: _open(args)))


def _open(args: argparse.Namespace) -> None:
    from vaelab.config.load import load_config

    # --experiment works without a params file; the file, when there, names the metrics the view shows.
    experiment: str | None = args.experiment
    config = None
    if not experiment or Path(args.params).is_file():
        config = load_config(args.params)
        experiment = experiment or config.base.experiment
    # Only now: loading MLflow and Keras takes seconds, which a mistyped --params should not wait for.
    from vaelab.tracking.ui import charts_address, run_mlflow_ui, training_view_address

    address = training_view_address(experiment, args.host, args.port, config)
    print(f"open {address}", flush=True)
    charts = charts_address(address)
    if charts:  # an untested MLflow got no saved view, so none of its charts either
        print(f"charts {charts}", flush=True)
    if not args.print_only:
        run_mlflow_ui(args.host, args.port)
