"""Named sets of params (``presets/<name>.yaml``): which there are, and one as dotted overrides checked against the
params file. The ``vaelab preset`` command (:mod:`vaelab.presets`) prints or runs them as ``dvc exp run -S``
flags; every command's ``--preset`` (:mod:`vaelab.cli_common`) lays them over the params it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelab.config.load import load_config
from vaelab.config.params_file import read_params
from vaelab.errors import ConfigError

PRESETS_DIR = Path("presets")


def available(presets_dir: Path | str = PRESETS_DIR) -> list[str]:
    return sorted(path.stem for path in Path(presets_dir).glob("*.yaml"))


def preset_overrides(
    name: str, presets_dir: Path | str = PRESETS_DIR, params: Path | str = "params.yaml", under: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preset's dotted overrides (``{"train.z_dim": 200, ...}``), validated on top of ``params`` and the
    overrides ``under`` it (an earlier preset's: a preset may need the keys another one set)."""
    path = Path(presets_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available(presets_dir)) or "none"
        raise ConfigError(f"no preset {name!r} ({path} not found); available presets: {known}")
    overrides = {}
    for section, values in read_params(path).items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of keys to values")
        for key, value in values.items():
            overrides[f"{section}.{key}"] = value
    try:
        load_config(params, {**(under or {}), **overrides})
    except ConfigError as err:
        raise ConfigError(f"{path}: {str(err).removeprefix('override: ')}") from None
    return overrides
