"""Which vaelab module imports which, read with `ast` (nothing is imported, so no TensorFlow).

An import counts wherever it stands: at module level, inside a function (which runs it later, on the first
call, but runs it all the same), or in an ``if TYPE_CHECKING:`` block, which only the type checker follows.
Each :class:`Import` says which of the three it is, so a test can ask about the program as it runs or as
mypy reads it. Used by tests/test_import_cycles.py (no loops) and tests/test_dvc_deps.py (a stage's files).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "vaelab"

Where = Literal["module", "function", "type"]
RUN_TIME: frozenset[Where] = frozenset({"module", "function"})
FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# --- from an import statement to modules -------------------------------------------------------------


def module_file(name: str) -> Path | None:
    """``vaelab.a.b`` -> src/vaelab/a/b.py, or src/vaelab/a/b/__init__.py for a package; None if neither."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def with_parents(name: str) -> list[str]:
    """Importing ``vaelab.a.b`` runs ``vaelab``, ``vaelab.a`` and ``vaelab.a.b``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def absolute_from(node: ast.ImportFrom, importer: Path) -> str:
    """The module a `from ... import` names, relative imports (``from .x import y``) made absolute."""
    if not node.level:
        return node.module or ""
    package = module_name(importer).split(".")
    if importer.name != "__init__.py":
        package = package[:-1]  # a module's own package
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imported_modules(node: ast.Import | ast.ImportFrom, importer: Path) -> list[str]:
    """Project modules an import statement runs; ``from vaelab import tracking`` names a package."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = absolute_from(node, importer)
        # `from P import x`: x is a submodule when such a file exists, else an attribute of P.
        names = [base] + [f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}")]
    project = [name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")]
    return [module for name in project for module in with_parents(name)]


def dynamic_imports(node: ast.Call) -> list[str]:
    """``importlib.import_module("vaelab.x")``: the module in the string; a computed name cannot be followed."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called != "import_module":
        return []
    argument = node.args[0] if node.args else None
    if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
        raise AssertionError(f"import_module with a computed name at line {node.lineno}: the analysis cannot follow it")
    return with_parents(argument.value) if argument.value.startswith(PACKAGE) else []


def modules_imported_in(nodes: Iterable[ast.AST], importer: Path) -> set[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(imported_modules(node, importer))
        elif isinstance(node, ast.Call):
            found.update(dynamic_imports(node))
    return found


# --- which part of a module runs ---------------------------------------------------------------------


def is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for the type checker, never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def children_that_run(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.If) and is_type_checking_block(node):
        return list(node.orelse)
    return list(ast.iter_child_nodes(node))


def walk_running(node: ast.AST) -> list[ast.AST]:
    """``ast.walk`` without the bodies of ``if TYPE_CHECKING:`` blocks."""
    nodes, pending = [], [node]
    while pending:
        current = pending.pop()
        nodes.append(current)
        pending.extend(children_that_run(current))
    return nodes


def module_level_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node that runs on import: all but the insides of function bodies and ``if TYPE_CHECKING:`` blocks."""
    nodes: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if not isinstance(node, FUNCTION_TYPES):
            pending.extend(children_that_run(node))
    return nodes


# --- the whole package as a graph --------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str  # module names, vaelab.a.b
    imported: str
    line: int
    where: Where  # at module level, inside a function (runs on the first call), or for the type checker alone

    def __str__(self) -> str:
        place = {"module": "", "function": ", inside a function", "type": ", under TYPE_CHECKING"}[self.where]
        return f"{self.importer} -> {self.imported} (line {self.line}{place})"


def imports_in(tree: ast.Module, path: Path) -> list[Import]:
    """Every project import of one module, each marked with where it stands."""
    importer = module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, where: Where) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend(Import(importer, name, node.lineno, where) for name in imported_modules(node, path) if name != importer)
        elif isinstance(node, ast.Call):
            found.extend(Import(importer, name, node.lineno, where) for name in dynamic_imports(node) if name != importer)
        if isinstance(node, ast.If) and is_type_checking_block(node):
            for statement in node.body:
                visit(statement, "type")
            for statement in node.orelse:
                visit(statement, where)
            visit(node.test, where)
            return
        inner: Where = "function" if isinstance(node, (*FUNCTION_TYPES, ast.Lambda)) and where == "module" else where
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, "module")
    return found


def package_files() -> list[Path]:
    return sorted(path for path in (SRC / PACKAGE).rglob("*.py") if "egg-info" not in str(path))


def package_imports() -> list[Import]:
    """Every import between vaelab's modules, less each module's implied import of its own packages: Python
    runs ``vaelab/__init__.py`` before any ``vaelab.x``, so ``vaelab.x -> vaelab`` is no step anyone can
    take out, and ``vaelab.load()`` importing ``vaelab.generator`` on first call closes no loop."""
    return [
        found for path in package_files() for found in imports_in(parse(path), path) if not found.importer.startswith(found.imported + ".")
    ]


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """One closed path of imports for each set of modules that import each other (a strongly connected
    component of more than one module), so a failure can show the lines to change."""
    edges: dict[str, dict[str, Import]] = {}
    for found in imports:
        edges.setdefault(found.importer, {}).setdefault(found.imported, found)
    return [_closed_path(component, edges) for component in _components(edges) if len(component) > 1]


def _components(edges: dict[str, dict[str, Import]]) -> Iterator[set[str]]:
    """Tarjan's strongly connected components, iterative so a deep import chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    nodes = sorted(set(edges) | {target for targets in edges.values() for target in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges.get(successor, {})))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def _closed_path(component: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """The shortest import path from the component's first module back to itself (breadth first)."""
    start = min(component)
    came_from: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, found in sorted(edges.get(node, {}).items()):
                if target not in component or target in came_from:
                    continue
                came_from[target] = found
                if target == start:
                    return _path_back(start, came_from)
                following.append(target)
        frontier = following
    raise AssertionError(f"no path back to {start} inside its own component {sorted(component)}")


def _path_back(start: str, came_from: dict[str, Import]) -> list[Import]:
    path = [came_from[start]]
    while path[-1].importer != start:
        path.append(came_from[path[-1].importer])
    return path[::-1]
