"""The one-line wording of a config error: the source (a file, or ``override``), the dotted key, what is wrong,
and the value received, shown short enough to stay one line however large it is."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from pydantic import BaseModel

from vaelab.config.schema import Config
from vaelab.errors import ConfigError


def config_error(error: Mapping[str, Any], source: str, overridden: AbstractSet[str]) -> ConfigError:
    """``error`` (pydantic's form: loc, msg, input, type) as a ConfigError; ``source`` becomes ``override``
    when the key came from --set (``overridden``) rather than from the file."""
    key = ".".join(str(part) for part in error["loc"][:2])
    if any(o == key or o.startswith(f"{key}.") for o in overridden):
        source = "override"
    return ConfigError(f"{source}: {_describe(error)}")


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error.get("type") == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key {key}; allowed keys here: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    received = error.get("input")
    if isinstance(received, float) and not math.isfinite(received):
        message = "must be a finite number"
    if isinstance(received, dict):  # a check across several keys: the message names them
        return f"{key}: {message}"
    return f"{key}: {message}; received {shown(received)}"


# A received value is shown in full up to a few hundred characters: YAML aliases let a small file hold
# billions of list items, which a plain repr would spell out (and take minutes and gigabytes doing it).
SHOWN_MAX = 300
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = SHOWN_MAX
_SHORT.maxlong = 100
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 8


def shown(value: Any) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(model.model_fields)
