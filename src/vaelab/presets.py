"""Named sets of params (``presets/<name>.yaml``) applied as DVC experiment overrides.

A preset file has the sections of params.yaml but only the keys it changes. `vaelab preset NAME` prints
them as ``dvc exp run`` flags (``-S train.z_dim=200 ...``), checked against the config first, so

    dvc exp run $(vaelab preset celeba) -S data.image_dir=/path/to/img_align_celeba

runs an ordinary DVC experiment: params.yaml stays untouched, `dvc exp show` lists the changed params, and
later ``-S`` flags override the preset's. `vaelab preset NAME --run [FLAGS...]` runs that command itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from vaelab.config.presets import PRESETS_DIR, available, preset_overrides
from vaelab.errors import ConfigError


def dvc_set_flags(overrides: dict[str, Any]) -> list[str]:
    """``["-S", "key=value", ...]`` with values in the YAML flow form `dvc exp run -S` parses."""
    flags = []
    for key, value in overrides.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        text = text.replace(", ", ",")  # one shell word per flag, so $(vaelab preset ...) splits correctly
        if any(c.isspace() or c in "'\"$`\\" for c in text):
            raise ConfigError(f"preset value {key}={text!r} cannot be passed as a shell word; avoid spaces and quotes")
        flags += ["-S", f"{key}={text}"]
    return flags


def main(argv: Sequence[str]) -> int:
    """`vaelab preset [NAME] [--run [DVC FLAGS...]]`."""
    parser = argparse.ArgumentParser(
        prog="vaelab preset",
        description="Print a preset's params as `dvc exp run` flags, or run that experiment.",
        epilog="Example: dvc exp run $(vaelab preset celeba) -S data.image_dir=/data/img_align_celeba",
    )
    parser.add_argument("name", nargs="?", help="preset name (a file presets/NAME.yaml); omit to list them")
    parser.add_argument("--params", default="params.yaml", help="params file the preset must fit (default: %(default)s)")
    parser.add_argument("--presets-dir", default=str(PRESETS_DIR), help="folder of presets (default: %(default)s)")
    parser.add_argument("--run", action="store_true", help="run `dvc exp run` with the flags; extra arguments follow it")
    args, extra = parser.parse_known_args(argv)
    if extra and not args.run:
        parser.error(f"unrecognized arguments: {' '.join(extra)} (pass --run to hand them to `dvc exp run`)")
    if args.name is None:
        print("\n".join(available(args.presets_dir)))
        return 0
    flags = dvc_set_flags(preset_overrides(args.name, args.presets_dir, args.params))
    if not args.run:
        print(" ".join(flags))
        return 0
    command = ["dvc", "exp", "run", *flags, *extra]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    try:
        return subprocess.run(command, check=False).returncode
    except FileNotFoundError:
        raise ConfigError("cannot run `dvc`: it is not on PATH; activate the environment (source .venv/bin/activate)") from None
