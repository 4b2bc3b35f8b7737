"""Checks of a valid config against what already exists on disk: a folder param must not name a file, a file
param not a folder, and no path may lead through a file. Nothing is created or changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vaelab.config.schema import Config, PathsSection
from vaelab.data.sources import IMAGE_FOLDER


def path_on_disk_error(config: Config) -> dict[str, Any] | None:
    """The first path param that what exists on disk contradicts, as a pydantic-style error; else None."""
    wanted = [(("paths", key), path, key in PathsSection.FOLDERS) for key, path in config.paths]
    if config.data.dataset == IMAGE_FOLDER:
        wanted.append((("data", "image_dir"), config.data.image_dir, True))
    for loc, path, folder in wanted:
        problem = _disk_problem(path, folder)
        if problem:
            return {"loc": loc, "msg": problem, "input": str(path)}
    return None


def _disk_problem(path: Path, folder: bool) -> str | None:
    # os.path's checks answer False where pathlib's would raise (e.g. a folder without search permission).
    for parent in reversed(path.parents):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return f"{parent} is not a folder, so nothing can be made inside it"
    if folder and os.path.lexists(path) and not os.path.isdir(path):
        return f"must name a folder, but {path} is not one"
    if not folder and os.path.isdir(path):
        return f"must name a file, but {path} is a folder"
    return None
