"""From a params file (and ``--set`` overrides) to a validated :class:`~vaelab.config.schema.Config`.

Each step fails with one :class:`~vaelab.errors.ConfigError` line naming the key, the value received and what
is allowed: reading the file (:mod:`.params_file`), the schema (:mod:`.schema`), this machine's memory
(:mod:`.memory`) and, for a loaded file, the disk (:mod:`.disk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vaelab.config.disk import path_on_disk_error
from vaelab.config.memory import memory_error
from vaelab.config.messages import config_error
from vaelab.config.params_file import DEFAULT_PARAMS, read_params
from vaelab.config.schema import Config
from vaelab.errors import ConfigError


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
    error = path_on_disk_error(config)
    if error:
        raise config_error(error, str(path), overridden)
    return config


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """A new config: ``config`` with dotted keys replaced, validated like params.yaml (the disk is not asked)."""
    return _validate(_apply_overrides(config.model_dump(mode="json"), overrides), "override")


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
        raise config_error(err.errors()[0], source, overridden) from None
    error = memory_error(config)
    if error:
        raise config_error(error, source, overridden)
    return config
