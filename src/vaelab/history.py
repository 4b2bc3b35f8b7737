"""The training history file (``paths.history``): one CSV row per epoch, written by train, read by evaluate's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vaelab.files import atomic_path


def write_history(path: Path | str, history: list[dict[str, Any]]) -> None:
    """``epoch`` and the history's keys as columns; 8 significant digits; a missing value is an empty cell."""
    table = pd.DataFrame(history, columns=list(history[0]) if history else ["epoch"])
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.8g", lineterminator="\n")


def read_history(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a history file, each value a float (``epoch`` an int) or None where the cell is empty."""
    table = pd.read_csv(path)
    return [{key: (None if pd.isna(value) else value) for key, value in row.items()} for row in table.to_dict("records")]
