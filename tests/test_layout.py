"""The package layout (issue 10): one package per stage of the recipe, no import cycles, small modules.

The import graph is read from the source (every `import` and `from ... import`, at module level or
inside a function), so a cycle hidden behind a lazy import fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flan_nb"
STAGES = ("data", "train", "eval", "report")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The flan_nb modules a file imports (a `from pkg import name` of a submodule counts as it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # imports under `if TYPE_CHECKING:` never run; they only name types for annotations
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                 for stmt in block.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module not in known:
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {name: imports_of(path, known) - {name} for name, path in mods.items()}
    # a package's __init__ that only names entry points lazily (importlib) has no static edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_detects_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_packages_name_their_entry_points(stage: str) -> None:
    import importlib

    pkg = importlib.import_module(f"flan_nb.{stage}")
    assert pkg.__all__, f"flan_nb.{stage} names no entry points"
    for name in pkg.__all__:
        assert callable(getattr(pkg, name)), f"flan_nb.{stage}.{name}"


def test_stage_packages_do_not_import_each_other_through_init() -> None:
    # stage code imports concrete modules (flan_nb.eval.answers), never a stage's __init__, so
    # importing one stage never drags in another stage's heavy dependencies
    graph = import_graph()
    offenders = sorted(f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts
                       if dst in {f"flan_nb.{s}" for s in STAGES})
    assert not offenders, offenders


def test_module_and_function_sizes() -> None:
    """No module over ~500 lines; no function over ~80 lines without a `# long:` reason."""
    big_modules = {name: n for name, p in modules().items()
                   if (n := len(p.read_text(encoding="utf-8").splitlines())) > 520}
    assert not big_modules, big_modules
    long_functions = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                header = "\n".join(lines[node.lineno - 1:node.lineno + 3])
                if length > 85 and "# long:" not in header:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not long_functions, long_functions


def test_every_yaml_goes_through_the_one_loader() -> None:
    """YAML 1.2 numbers, duplicate keys and encoding errors are handled in flan_nb.yaml_io only:
    no other module may call PyYAML's loaders directly (issue 13 part 5, issue 16 part 1)."""
    offenders = []
    for name, path in modules().items():
        if name == "flan_nb.yaml_io":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "yaml" and node.attr in {"safe_load", "load", "full_load",
                                                                   "unsafe_load", "load_all"}):
                offenders.append(f"{name}:{node.lineno} yaml.{node.attr}")
    assert not offenders, offenders
