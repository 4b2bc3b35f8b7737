"""No vaelab module imports, directly or through others, a module that imports it back.

Imports inside functions count: they run on the first call, so a loop closed by one is still a loop, only
hidden from the reader and from import-time errors. Imports under ``if TYPE_CHECKING:`` never run; they count
for the type checker's graph, which must be free of loops too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from import_graph import RUN_TIME, SRC, Import, cycles, imports_in, package_imports


def report(found: list[list[Import]]) -> str:
    return "\n".join("  " + "\n    ".join(str(step) for step in cycle) for cycle in found)


def test_no_module_imports_itself_back_at_run_time() -> None:
    found = cycles(step for step in package_imports() if step.where in RUN_TIME)
    if found:
        pytest.fail(f"{len(found)} import cycle(s); move what both sides need into a module below them:\n{report(found)}", pytrace=False)


def test_no_module_imports_itself_back_for_the_type_checker() -> None:
    found = cycles(package_imports())
    if found:
        pytest.fail(f"{len(found)} import cycle(s) counting TYPE_CHECKING imports:\n{report(found)}", pytrace=False)


def test_no_module_imports_the_command_line_entry() -> None:
    """cli.py is the top: what a command shares with it lives in cli_common.py, below both."""
    importers = sorted(str(step) for step in package_imports() if step.imported == "vaelab.cli")
    assert not importers, "import from vaelab.cli_common instead:\n" + "\n".join(importers)


def test_a_cycle_put_back_is_found() -> None:
    """Guards the analysis: cli.py is the top, so an import of it from a module it uses closes a loop."""
    put_back = Import("vaelab.stages", "vaelab.cli", 1, "function")

    (cycle,) = cycles([*package_imports(), put_back])

    assert put_back in cycle
    assert cycle[0].importer == cycle[-1].imported


def test_imports_are_marked_by_where_they_stand() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import vaelab.errors\n"
        "if TYPE_CHECKING:\n"
        "    from vaelab.model import VAE\n"
        "def load():\n"
        "    from vaelab.tracking import runs\n"
        "key = lambda: __import__('x')\n"
    )
    path = SRC / "vaelab" / "example.py"

    found = {(step.imported, step.where) for step in imports_in(ast.parse(source), path)}

    assert found == {
        ("vaelab", "module"),
        ("vaelab.errors", "module"),
        ("vaelab", "type"),
        ("vaelab.model", "type"),
        ("vaelab", "function"),
        ("vaelab.tracking", "function"),
        ("vaelab.tracking.runs", "function"),
    }


def test_a_loop_of_three_is_reported_as_one_closed_path() -> None:
    steps = [Import("a", "b", 1, "module"), Import("b", "c", 2, "function"), Import("c", "a", 3, "module"), Import("c", "d", 4, "module")]

    assert cycles(steps) == [steps[:3]]


def test_the_analysis_reads_every_module(tmp_path: Path) -> None:
    importers = {step.importer for step in package_imports()}
    assert {"vaelab.cli", "vaelab.stages", "vaelab.tracking.runs"} <= importers
