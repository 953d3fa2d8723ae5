"""The import graph of ``zoo`` points only down: no module imports another that (directly or not)
imports it back, counting imports inside functions too; nothing inside ``zoo`` imports the CLI; the
checkpoint-file layer (``zoo.hub``) imports nothing model-related."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "zoo"


def _modules() -> dict[str, Path]:
    """Importable zoo modules -> their files (folders that are not Python identifiers, such as the
    Hub kernel layout ``kernels/hub/build/torch-universal``, are data, not packages)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if not all(p.isidentifier() for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a zoo module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """module -> zoo modules it imports anywhere in its body (top level, functions, try blocks)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from zoo import hub`` imports the module zoo.hub; ``from zoo.x import f`` imports zoo.x
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.split(".")[0] != "zoo":
                    continue
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != mod:
                    edges.add(resolved)
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """One concrete circle through ``start`` inside ``members`` (for the failure message)."""
    trail, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[trail[-1]] if w in members)
        if start in nxt and len(trail) > 1:
            return trail + [start]
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return trail + [nxt[0]] if nxt else trail
        trail.append(fresh[0])
        seen.add(fresh[0])


def test_graph_is_found():
    graph = import_graph()
    assert {"zoo", "zoo.hub", "zoo.factory", "zoo.cli", "zoo.registry", "zoo.models.base", "zoo.evaluate",
            "zoo.evaluate.common", "zoo.evaluate.image", "zoo.evaluate.audio", "zoo.convert"} <= set(graph)
    assert "zoo.hub" in graph["zoo.factory"] and "zoo.evaluate.common" in graph["zoo.evaluate.image"]


def test_no_import_cycles():
    graph = import_graph()
    cycles = _cycles(graph)
    message = "\n".join(" -> ".join(_path(graph, c[0], set(c))) for c in cycles)
    assert not cycles, f"import cycles inside zoo:\n{message}"


def test_nothing_imports_the_cli():
    importers = sorted(m for m, edges in import_graph().items() if "zoo.cli" in edges)
    assert not importers, f"zoo.cli is the top floor, yet imported by {importers}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_hub_knows_nothing_of_models():
    """Checkpoint file I/O sits below the models: nothing it imports, directly or not, is model-related."""
    model_related = {m for m in import_graph() if m == "zoo" or m.startswith(
        ("zoo.models", "zoo.registry", "zoo.convert", "zoo.factory", "zoo.model_card", "zoo.training", "zoo.evaluate"))}
    assert not _reachable(import_graph(), "zoo.hub") & model_related


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path(graph, "a", {"a", "b", "c"}) == ["a", "b", "c", "a"]
