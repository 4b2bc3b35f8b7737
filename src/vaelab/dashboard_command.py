"""`vaelab dashboard`: optuna-dashboard on the sweep's study storage, with each trial's pictures, on 127.0.0.1.

Kept apart from :mod:`vaelab.sweep` so that ``--help`` answers without loading Optuna.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaelab import logs
from vaelab.cli_common import add_config_arguments, config_from_args, run_guarded
from vaelab.sweep.storage import DEFAULT_STORAGE, STORAGE_ENV, open_study_storage, resolve_artifact_folder, resolve_storage

DESCRIPTION = "optuna-dashboard on the sweep's study storage, with each trial's sample grid and loss curves"
# Only this machine: the dashboard has no login, and its page can also change a study (tell trials, upload files).
HOST = "127.0.0.1"


def main(argv: Sequence[str] | None = None) -> None:
    """`vaelab dashboard [--study NAME] [--storage SPEC] [--port N]`."""
    parser = argparse.ArgumentParser(prog="vaelab dashboard", description=DESCRIPTION)
    add_config_arguments(parser)
    parser.add_argument("--study", help="the study whose address is printed (default: sweep.study_name); the dashboard lists them all")
    parser.add_argument("--storage", help=f"journal file or database URL (default: ${STORAGE_ENV}, sweep.storage, {DEFAULT_STORAGE})")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default: %(default)s)")
    args = parser.parse_args(argv)
    logs.configure()
    sys.exit(run_guarded(lambda: _open(args)))


def _open(args: argparse.Namespace) -> None:
    from vaelab.sweep.dashboard import run_dashboard, study_address

    config = config_from_args(args)
    storage, study_id = open_study_storage(resolve_storage(args.storage, config), args.study or config.sweep.study_name)
    print(f"open {study_address(HOST, args.port, study_id)}", flush=True)
    run_dashboard(storage, resolve_artifact_folder(), HOST, args.port)
