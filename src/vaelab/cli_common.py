"""What every command shares, below :mod:`vaelab.cli` so that the command modules need not import it back.

``--params``, ``--preset`` and ``--set`` read into a config, and the guard that turns a user's mistake
(:class:`~vaelab.errors.VaelabError`) into one line on stderr and exit code 2, Ctrl-C into exit code 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import yaml

from vaelab.config.load import load_config
from vaelab.config.schema import Config
from vaelab.errors import ConfigError, VaelabError


def parse_override(text: str) -> tuple[str, object]:
    """``train.z_dim=8`` -> ("train.z_dim", 8); the value is read as YAML, like `dvc exp run -S`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.z_dim=8")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument(
        "--preset",
        dest="presets",
        action="append",
        default=[],
        metavar="NAME",
        help="lay presets/NAME.yaml over the params file, before --set (repeatable: later presets win)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param for this run only, e.g. --set train.epochs=1 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    from vaelab.config.presets import preset_overrides

    overrides: dict[str, object] = {}
    for name in args.presets:
        overrides.update(preset_overrides(name, params=args.params, under=overrides))
    overrides.update(parse_override(o) for o in args.overrides)
    return load_config(args.params, overrides)


def run_guarded(action: Callable[[], object]) -> int:
    """Run ``action``; turn user errors into one line and an exit code."""
    try:
        action()
    except VaelabError as err:
        print(f"vaelab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return 0
