"""The shape of the code: no import circle (TYPE_CHECKING imports included), layers import only the
layers below them, and no source file past 450 lines (past that it holds two ideas)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "sipbridge"
# Bottom to top; a module may import its own layer and those before it. Modules at the package's
# top level are not layers: the shared utilities (config, metrics, logs, ...) are imported from
# anywhere, the assembly (bridge, cli) imports everything.
LAYERS = ("sip", "rtp", "media", "agent", "media_session", "calls", "providers", "api")
MAX_LINES = 450


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The sipbridge modules ``path`` imports, anywhere in it (TYPE_CHECKING and functions too)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("sipbridge")}


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else None


def test_there_is_no_import_circle() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert _cycles(graph) == []


def test_layers_import_only_the_layers_below() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _points_up(module, target)
    ]
    assert upward == []


def _points_up(module: str, target: str) -> bool:
    """A layer importing a higher layer, or the assembly (bridge, cli) that imports every layer."""
    mine, theirs = _layer(module), _layer(target)
    if mine is None:
        return False
    return (theirs is not None and theirs > mine) or target in ("sipbridge.bridge", "sipbridge.cli")


def test_no_source_file_is_over_450_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
