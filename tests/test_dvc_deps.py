"""dvc.yaml lists, for every stage, each source file the stage imports: a change to one re-runs the stage.

The import closure of a stage is computed statically with `ast` by tests/import_graph.py (nothing is imported,
so no TensorFlow): from the stage's `python pipeline/<stage>.py` through every `vaelab` import, lazy imports
inside functions included, to files under src/vaelab. A dep that is a directory covers every file under it.

Two modules dispatch by stage name, and only the part a stage runs counts, so that a change to one
stage's code does not re-run the others:

* cli.py: the pipeline script calls `stage_main` (`train_main` for train, which adds `--workers`), which
  takes the stage's function of `vaelab.stages` from the `STAGES` table. Only cli.py's module-level
  imports, that entry function and the cli functions it uses are followed, not the other commands
  (compare, preset, the TOOLS table).
* stages.py: its module-level imports, plus the imports inside `run_<stage>` and inside every
  module-level function of stages.py that it uses by name, transitively.

The package's `__init__.py` runs on every import of vaelab, but its functions (`vaelab.load`, the
notebook's entry point) are for users, never called by a stage: only its module-level imports count.

Every other module counts whole: all of its imports, in functions or not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from import_graph import (
    FUNCTION_TYPES,
    PACKAGE,
    ROOT,
    SRC,
    module_file,
    module_level_nodes,
    modules_imported_in,
    parse,
    walk_running,
)

CLI = SRC / PACKAGE / "cli.py"
STAGES_MODULE = SRC / PACKAGE / "stages.py"
PACKAGE_INIT = SRC / PACKAGE / "__init__.py"
STAGE_ENTRY = "stage_main"  # the function of cli.py that pipeline/<stage>.py calls with the stage's name
OWN_ENTRIES = {"train": "train_main"}  # stages whose script calls a cli function of their own, without arguments
CMD = re.compile(r"^python\s+(pipeline/\w+\.py)\b")


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def functions_reached(path: Path, entries: set[str]) -> list[ast.AST]:
    """The entry functions and the module-level functions they use by name (called or passed), transitively."""
    defined = {node.name: node for node in parse(path).body if isinstance(node, FUNCTION_TYPES)}
    missing = entries - defined.keys()
    assert not missing, f"{path.relative_to(ROOT)} defines no function {sorted(missing)}"
    seen: set[str] = set()
    pending = list(entries)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(node.id for node in ast.walk(defined[name]) if isinstance(node, ast.Name) and node.id in defined)
    return [defined[name] for name in sorted(seen)]


def nodes_that_run(path: Path, entries: set[str] | None) -> list[ast.AST]:
    """The whole module (entries None), or its module-level code plus the entry functions and their helpers."""
    tree = parse(path)
    if entries is None:
        return walk_running(tree)
    reached = [node for function in functions_reached(path, entries) for node in walk_running(function)]
    return module_level_nodes(tree) + reached


# --- a stage's closure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    script: Path  # pipeline/<stage>.py, from the stage's cmd
    deps: tuple[str, ...]


def stage_function(stage: str) -> str:
    """The function of vaelab.stages that cli.STAGES names for the stage (``"name": (stages.run_x, help)``, read with ast)."""
    for node in parse(CLI).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "STAGES" for t in targets):
                assert isinstance(node.value, ast.Dict), "cli.STAGES is not a dict display"
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    if key is not None and ast.literal_eval(key) == stage:  # None: a **spread, which names no stage
                        assert isinstance(value, ast.Tuple), ast.dump(value)
                        function = value.elts[0]
                        assert isinstance(function, ast.Attribute), ast.dump(function)
                        assert isinstance(function.value, ast.Name) and function.value.id == "stages", ast.dump(function)
                        return function.attr
                raise AssertionError(f"cli.STAGES has no stage {stage!r}")
    raise AssertionError("cli.py defines no STAGES table")


def partial_modules(stage: str) -> dict[Path, set[str]]:
    """The modules read in part, each with the functions of it that this stage runs."""
    return {CLI: {OWN_ENTRIES.get(stage, STAGE_ENTRY)}, STAGES_MODULE: {stage_function(stage)}, PACKAGE_INIT: set()}


def check_dispatch_route(importer: Path, target: Path, stage: Stage) -> None:
    """Reading cli.py and stages.py in part holds only on the route script -> cli -> stages: another
    importer could run any of their functions."""
    expected = {CLI: stage.script, STAGES_MODULE: CLI}
    if target in expected and importer not in (expected[target], target):
        raise AssertionError(
            f"{importer.relative_to(ROOT)} imports {target.relative_to(ROOT)}: the closure reads that module only"
            " in part, for the stage's own function; follow the new route in tests/test_dvc_deps.py"
        )


def import_closure(stage: Stage) -> set[Path]:
    """The script and every project file that running it imports."""
    partial = partial_modules(stage.name)
    files: set[Path] = set()
    pending = [stage.script]
    while pending:
        path = pending.pop()
        if path in files:
            continue
        files.add(path)
        for name in modules_imported_in(nodes_that_run(path, partial.get(path)), path):
            target = module_file(name)
            assert target, f"{path.relative_to(ROOT)} imports {name}, which has no file under src/"
            check_dispatch_route(path, target, stage)
            pending.append(target)
    return files


def script_of(name: str, spec: dict) -> Path:
    match = CMD.match(spec["cmd"])
    assert match, f"stage {name}: cmd {spec['cmd']!r} is not `python pipeline/<stage>.py`"
    return ROOT / match.group(1)


def load_stages() -> list[Stage]:
    return [Stage(name, script_of(name, spec), tuple(spec.get("deps", []))) for name, spec in dvc_stages().items()]


def code_deps(stage: Stage) -> list[str]:
    """The deps that are paths in the repository; ${...} ones are data and params."""
    return [dep for dep in stage.deps if "${" not in dep]


def is_covered(path: Path, deps: list[str]) -> bool:
    return any(path == ROOT / dep or (ROOT / dep) in path.parents for dep in deps)


def missing_deps(stage: Stage) -> list[str]:
    deps = code_deps(stage)
    return sorted(str(path.relative_to(ROOT)) for path in import_closure(stage) if not is_covered(path, deps))


# --- the tests ---------------------------------------------------------------------------------------

STAGES = load_stages()


def test_every_stage_script_dispatches_through_its_cli_entry() -> None:
    """The closure assumes pipeline/<stage>.py calls stage_main("<stage>") (or its own entry, e.g. train_main());
    check it rather than trust it."""
    for stage in STAGES:
        entry = OWN_ENTRIES.get(stage.name, STAGE_ENTRY)
        arguments = [
            (node.func.id, [ast.literal_eval(arg) for arg in node.args])
            for node in ast.walk(parse(stage.script))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (STAGE_ENTRY, *OWN_ENTRIES.values())
        ]
        expected = [(entry, [] if stage.name in OWN_ENTRIES else [stage.name])]
        assert arguments == expected, (
            f"{stage.script.relative_to(ROOT)} should call {entry}({'' if stage.name in OWN_ENTRIES else repr(stage.name)})"
        )


def test_deps_cover_every_imported_file() -> None:
    missing = {stage.name: missing_deps(stage) for stage in STAGES}
    missing = {name: files for name, files in missing.items() if files}
    report = "\n".join(
        f"stage {name} imports files its deps do not list; add under `{name}: deps:` in dvc.yaml:\n"
        + "\n".join(f"      - {path}" for path in files)
        for name, files in missing.items()
    )
    if missing:
        pytest.fail("a change to these files would not re-run the stage.\n" + report, pytrace=False)


def test_code_deps_exist() -> None:
    """A renamed or deleted module must not leave a stale dep behind."""
    stale = [
        f"stage {stage.name}: {dep}"
        for stage in STAGES
        for dep in code_deps(stage)
        if dep.startswith(("src/", "pipeline/")) and not (ROOT / dep).exists()
    ]
    assert not stale, "deps in dvc.yaml that name no file or folder:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        # lazy imports inside run_train, and the package __init__ that importing vaelab.tracking.runs runs
        (
            "train",
            {"src/vaelab/training.py", "src/vaelab/tracking/__init__.py", "src/vaelab/tracking/runs.py", "src/vaelab/tracking/notes.py"},
        ),
        # lazy imports inside evaluation.report's functions, reached through run_evaluate
        ("evaluate", {"src/vaelab/model.py", "src/vaelab/evaluation/classifier.py", "src/vaelab/evaluation/likelihood.py"}),
        # the dispatcher and the package __init__ of every stage
        ("download", {"src/vaelab/cli.py", "src/vaelab/stages.py", "src/vaelab/__init__.py", "src/vaelab/data/__init__.py"}),
    ],
)
def test_closure_follows_lazy_and_dispatched_imports(stage: str, expected: set[str]) -> None:
    """Guards the analysis itself: an analysis that found nothing would pass the coverage test."""
    (found,) = [s for s in STAGES if s.name == stage]
    closure = {str(path.relative_to(ROOT)) for path in import_closure(found)}
    assert expected <= closure


def test_closure_leaves_out_other_stages_and_commands() -> None:
    """Per-stage precision: download does not run training code, nor cli's compare or preset commands."""
    (download,) = [s for s in STAGES if s.name == "download"]
    closure = {str(path.relative_to(ROOT)) for path in import_closure(download)}
    assert not closure & {"src/vaelab/training.py", "src/vaelab/compare.py", "src/vaelab/presets.py"}


def test_imports_for_the_type_checker_alone_are_not_dependencies() -> None:
    tree = ast.parse("if TYPE_CHECKING:\n    import vaelab.model\nelse:\n    import vaelab.losses\nimport vaelab.errors\n")

    imported = modules_imported_in(walk_running(tree), SRC / PACKAGE / "example.py")

    assert imported == {"vaelab", "vaelab.losses", "vaelab.errors"}
