"""`vaelab promote`: train, evaluate and register a study's winner through the pipeline, as a DVC experiment.

Kept apart from :mod:`vaelab.sweep` so that ``--help`` answers without loading Optuna.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaelab import logs
from vaelab.cli_common import add_config_arguments, config_from_args, run_guarded
from vaelab.sweep.storage import DEFAULT_STORAGE, STORAGE_ENV, resolve_storage

DESCRIPTION = (
    "Train the study's winning trial with the pipeline's own epochs and data (`dvc exp run --temp -n STUDY-trialN`), "
    "evaluated and registered like any run; the study and its MLflow parent run record it. Promoting again trains nothing."
)


def main(argv: Sequence[str] | None = None) -> None:
    """`vaelab promote [STUDY] [--storage SPEC] [--params F] [--set K=V ...]`."""
    parser = argparse.ArgumentParser(prog="vaelab promote", description=DESCRIPTION)
    parser.add_argument("study", nargs="?", help="the study (default: sweep.study_name)")
    add_config_arguments(parser)
    parser.add_argument("--storage", help=f"journal file or database URL (default: ${STORAGE_ENV}, sweep.storage, {DEFAULT_STORAGE})")
    args = parser.parse_args(argv)
    logs.configure()
    sys.exit(run_guarded(lambda: _promote(args)))


def _promote(args: argparse.Namespace) -> None:
    from vaelab.sweep.promote import describe, promote_study

    config = config_from_args(args)
    record = promote_study(config, resolve_storage(args.storage, config), args.study or config.sweep.study_name)
    print(describe(record))
