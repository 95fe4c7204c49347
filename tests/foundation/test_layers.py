"""The packages of ``src/virtuousai`` import each other in one direction only: no package imports a package that
(directly or through others) imports it back. Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import virtuousai

ROOT = Path(virtuousai.__file__).parent


def _package_of(module: str) -> str | None:
    """``virtuousai.runtime.worker`` → ``runtime``; ``virtuousai.app`` → ``app``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "virtuousai" and len(parts) > 1 else None


def package_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "store" and "migrations" in relative.parts:
            continue  # migrations import the store, and nothing imports them
        own = relative.parts[0].removesuffix(".py")
        targets = graph.setdefault(own, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                package = _package_of(name)
                if (
                    package is not None
                    and package != own
                    and (ROOT / package).exists() | (ROOT / f"{package}.py").exists()
                ):
                    targets.add(package)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_packages_import_each_other_without_a_cycle() -> None:
    cycle = find_cycle(package_imports())
    assert cycle is None, "import cycle between packages: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
