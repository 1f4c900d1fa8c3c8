"""No import cycles in asgi_worker or supervisor (ARCHITECTURE.md, "Layers").

Every import counts: module level, inside functions (lazy imports) and under ``TYPE_CHECKING``. A
cycle hidden behind a lazy or type-only import is still two modules that cannot be understood, or
tested, one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("asgi_worker", "supervisor")


def our_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from package import submodule" imports the submodule; anything else, the module itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    known = our_modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    # The check above must be able to fail: a two-module and a three-module cycle beside a chain.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(find_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_imports_are_resolved():
    # Spot checks that the walk sees lazy, relative and TYPE_CHECKING imports.
    known = our_modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert "asgi_worker.apploader" in graph["asgi_worker.config"]  # lazy, inside load()
    assert "asgi_worker.context" in graph["asgi_worker.http.connection"]  # under TYPE_CHECKING
    assert "asgi_worker.log.access" in graph["asgi_worker.log"]  # a package's own modules
