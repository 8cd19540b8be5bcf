"""The package's shape rules, checked on every run (``src/gbif_dl`` outside ``testing/``).

- no file over 800 lines, no function body over 80 lines;
- no import cycle between modules (imports under ``if TYPE_CHECKING:`` do not count: they never
  run);
- no module imports another module's private name (``from x import _y``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import gbif_dl

PACKAGE = Path(gbif_dl.__file__).parent
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {name: p for name, p in found.items() if not name.startswith("gbif_dl.testing")}


ALL_MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (skips ``if TYPE_CHECKING:`` bodies)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _edges(module: str, path: Path) -> tuple[set[str], list[str]]:
    """The package modules ``module`` imports at run time, and the private names it imports."""
    targets: set[str] = set()
    private: list[str] = []
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name.startswith("gbif_dl"))
            continue
        source = _absolute(module, path, node)
        if not source.startswith("gbif_dl"):
            continue
        for alias in node.names:
            full = f"{source}.{alias.name}"
            if full in ALL_MODULES:  # a submodule, imported by name
                targets.add(full)
                continue
            targets.add(source)
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                private.append(f"{module} imports {source}.{alias.name}")
    return targets, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_file_over_800_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


def test_no_function_body_over_80_lines() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.body[0].lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({length} lines)")
    assert long == []


def test_no_import_cycle_and_no_private_import() -> None:
    graph: dict[str, set[str]] = {}
    private: list[str] = []
    for name, path in MODULES.items():
        targets, names = _edges(name, path)
        graph[name] = {t for t in targets if t in MODULES and t != name}
        private.extend(names)
    assert _cycles(graph) == []
    assert private == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list) -> None:
    assert _cycles(graph) == expected


def test_the_import_reader_sees_private_and_relative_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from gbif_dl.records import _hidden\n"
        "from ..errors import ConfigError\n"
        "if TYPE_CHECKING:\n"
        "    from gbif_dl.io import download\n"
    )
    probe = tmp_path / "probe.py"  # read as if it were gbif_dl/sources/probe.py
    probe.write_text(source)
    targets, private = _edges("gbif_dl.sources.probe", probe)
    assert targets == {"gbif_dl.records", "gbif_dl.errors"}
    assert private == ["gbif_dl.sources.probe imports gbif_dl.records._hidden"]
