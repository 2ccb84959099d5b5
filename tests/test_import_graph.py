"""No import circle inside src/sbcb, counting imports deferred into functions too (not TYPE_CHECKING ones)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """sbcb modules imported anywhere in the file, deferred imports included (`TYPE_CHECKING` blocks excluded);
    a ``from a import b`` counts ``a.b`` when that is a module."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for sub in ast.walk(child)
    }
    out: set[str] = set()
    for sub in ast.walk(tree):
        if id(sub) in skipped:
            continue
        if isinstance(sub, ast.Import):
            out.update(a.name for a in sub.names if a.name.startswith("sbcb"))
        elif isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("sbcb") and not sub.level:
            for a in sub.names:
                full = f"{sub.module}.{a.name}"
                out.add(full if full in modules else sub.module)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / "sbcb").rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        deps = _imports(path, modules)
        # a package importing its own submodules (lazy tables) is not a circle
        graph[name] = {d for d in deps if d in modules and d != name and not d.startswith(name + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_src():
    graph = _graph()
    assert "sbcb.wrapper" in graph and "sbcb.segmentor" in graph["sbcb.wrapper"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cli_subcommands_never_import_the_main_module():
    # sbcb.cli.main loads the subcommands with importlib (not an edge the graph above sees), so a subcommand that
    # imported it back would be a circle the cycle check misses: only `python -m sbcb` may import it
    importers = {name for name, deps in _graph().items() if "sbcb.cli.main" in deps}
    assert importers <= {"sbcb.__main__"}, importers


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
