"""The package's import graph has no circle, and the CLI is layered main -> subcommand ->
cli._common -> library.

The graph is read from the source with ``ast`` (nothing is imported): an edge ``a -> b`` for
every ``import b`` / ``from b import x`` in module ``a``, at module level or inside a function
(lazy imports count), ``from pkg import name`` resolving to ``pkg.name`` when that is a module;
and, for the PEP 562 lazy exports, every string constant naming a module of the package in a
module that calls ``importlib.import_module``. Imports under ``if TYPE_CHECKING:`` never run
and are left out. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those
implicit parent edges are not drawn (every package whose ``__init__`` re-exports its modules
would be a "circle" otherwise).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "constraintlab"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> nx.DiGraph:
    """``a -> b`` when module ``a`` of the package imports module ``b`` of the package."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    packages = {module_name(p) for p in ROOT.rglob("__init__.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        base = name if name in packages else name.rpartition(".")[0]
        nodes = list(_runtime_nodes(tree))
        lazy = any(isinstance(n, ast.Attribute) and n.attr == "import_module" for n in nodes)
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    parent = base.split(".")
                    parent = parent[:len(parent) - node.level + 1]
                    mod = ".".join(parent + ([mod] if mod else []))
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    targets.add(sub if sub in files else mod)
            elif lazy and isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in files:
                    targets.add(node.value)
        for t in targets:
            if t in files and t != name:
                graph.add_edge(name, t)
    return graph


def test_no_import_circle_anywhere_in_the_package() -> None:
    graph = import_graph()
    assert graph.number_of_edges() > 100  # the walk found the package's imports
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_the_walk_sees_lazy_and_pep562_imports() -> None:
    graph = import_graph()
    # a function-level import (cli subcommands import the library lazily) ...
    assert graph.has_edge("constraintlab.cli.analyze", "constraintlab")
    # ... and the lazy exports of the torch-using packages (importlib.import_module strings)
    assert graph.has_edge("constraintlab.encode", "constraintlab.encode.extraction")
    assert graph.has_edge("constraintlab", "constraintlab.api")


def test_cli_layers() -> None:
    """main -> subcommand -> cli._common -> library; nothing in the CLI imports main, no
    subcommand imports another, the library never imports the CLI."""
    graph = import_graph()
    cli = {n for n in graph if n.startswith("constraintlab.cli.")}
    subcommands = cli - {"constraintlab.cli.main", "constraintlab.cli._common"}
    assert subcommands == {f"constraintlab.cli.{n}" for n in
                           ("inspect", "extract", "analyze", "gate", "probe", "order", "clean",
                            "select")}
    assert set(graph.successors("constraintlab.cli.main")) & cli == subcommands | {
        "constraintlab.cli._common"}
    for sub in subcommands:
        assert not set(graph.successors(sub)) & (cli - {"constraintlab.cli._common"}), sub
    assert not set(graph.successors("constraintlab.cli._common")) & cli
    for lib in set(graph) - cli - {"constraintlab.cli", "constraintlab.__main__"}:
        assert not set(graph.successors(lib)) & cli, lib
