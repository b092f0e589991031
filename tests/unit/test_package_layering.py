"""The package import graph of ``src/crossdock`` runs one way.

Read from the source with ``ast`` (imports inside functions included, since a lazy
import is still a dependency): cli → scheduler → executors → runner → dag → models and
configuration. A cycle between packages is how a layered design decays one convenient
import at a time, so this test names the edge that closed it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import crossdock

ROOT = Path(crossdock.__file__).parent
#: Packages that are layers of their own below ``crossdock`` (sub-packages kept apart).
NESTED = {("kubernetes", "local_runtime")}


def _node(module: str) -> str | None:
    """The layer a module belongs to: its package below crossdock, or the root module itself."""
    parts = module.split(".")
    if parts[0] != "crossdock" or len(parts) == 1:
        return None
    if tuple(parts[1:3]) in NESTED:
        return ".".join(parts[1:3])
    return parts[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_edges() -> dict[str, dict[str, str]]:
    """layer → {layer it imports: one 'file: import' that shows it}."""
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(ROOT.rglob("*.py")):
        source = _node(_module_name(path))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            else:
                continue
            for target in targets:
                layer = _node(target)
                if layer and source and layer != source:
                    edges[source].setdefault(layer, f"{path.relative_to(ROOT)}: import {target}")
    return edges


def _cycle(edges: dict[str, dict[str, str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_package_level_import_cycle():
    edges = package_edges()
    cycle = _cycle(edges)
    if cycle:
        shown = [f"{a} -> {b} ({edges[a][b]})" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("package import cycle:\n  " + "\n  ".join(shown))


def test_layers_below_do_not_import_layers_above():
    edges = package_edges()
    forbidden = {
        "dag": {"runner", "executors", "scheduler", "cli"},
        "runner": {"executors", "scheduler", "cli"},
        "executors": {"scheduler", "cli"},
        "scheduler": {"cli"},
        "kubernetes.local_runtime": {"executors", "scheduler", "cli"},
        "kubernetes": {"kubernetes.local_runtime", "executors", "scheduler", "cli"},
        "models": {"dag", "runner", "executors", "scheduler", "cli", "kubernetes"},
    }
    wrong = [f"{low} -> {high} ({edges[low][high]})"
             for low, highs in forbidden.items() for high in sorted(highs) if high in edges.get(low, {})]
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def test_the_checker_sees_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": ""}, "b": {}}) is None
