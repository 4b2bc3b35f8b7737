"""The README's code map names every module under src/vaelab/, and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaelab"


def mapped_modules() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- code-map -->", 1)[1].split("<!-- /code-map -->", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([^`]+\.py)`", cell)}


def tree_modules() -> set[str]:
    # A package's __init__.py and __main__.py are its door, not a behaviour of their own.
    return {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and "egg-info" not in str(path)
    }


def test_every_module_is_in_the_code_map_and_every_entry_exists() -> None:
    mapped, tree = mapped_modules(), tree_modules()

    assert sorted(tree - mapped) == [], "modules missing from the README's code map"
    assert sorted(mapped - tree) == [], "code-map entries with no such module"
    assert len(mapped) > 40  # the table was found and read
