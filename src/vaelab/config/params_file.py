"""Reading a params file (params.yaml, a preset in presets/) into plain data: YAML with two of its rules kept.

PyYAML's safe loader is used with two changes. ``1e-4`` reads as a float (YAML 1.1 wants ``1.0e-4``, which
nobody writes). And a key written twice in one mapping is an error, as the YAML specification says it is:
PyYAML would keep the second silently, so a second ``base:`` section would replace the first without a word.
Every failure is one :class:`~vaelab.errors.ConfigError` line that starts with the file's path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from vaelab.config.schema import Config
from vaelab.errors import ConfigError, first_line

DEFAULT_PARAMS = Path("params.yaml")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(Exception):
    """A key written twice in one mapping; lines count from 1."""

    def __init__(self, key: object, first_line: int, second_line: int) -> None:
        super().__init__(key, first_line, second_line)
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float and refuses a key written twice in one mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            # `<<: *defaults` merges keys that the mapping's own may override; only the mapping's own count.
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)  # a scalar: str, number, bool, null or date, all hashable
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


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
    except _DuplicateKey as err:
        raise ConfigError(
            f"{path}: line {err.second_line}: duplicate key {err.key} (first at line {err.first_line}); "
            "YAML allows a key once per mapping: merge the two into one"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err, 1000)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except ValueError as err:  # what PyYAML reads as a date or number but cannot be one: 2020-13-45, 10**5000
        reason = str(err).split(";")[0]
        raise ConfigError(f"{path}: invalid YAML: a date or number that cannot be read ({reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: lists or mappings nested too deeply to read") from None
    if raw is None:
        raise ConfigError(f"{path}: file is empty; expected sections {', '.join(Config.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, received {type(raw).__name__}")
    return raw
