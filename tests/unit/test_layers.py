"""The package layout is the architecture (docs/design.md, "Layout"): these rules keep
it so. Imports are read from the source, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("flow", "actors", "api", "activities")
#: Third-party libraries that do I/O or hold global state: the pure core imports none.
DRIVERS = ("peewee", "playhouse", "psycopg2", "pika", "dramatiq", "pykka", "falcon", "gunicorn", "requests")
#: "No module over ~400 lines" (issue 13): past this a module is doing two things.
MAX_LINES = 440


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _imported_modules(name: str) -> set[str]:
    return {i for i in IMPORTS[name] if i in MODULES and i != name}


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_core_is_pure():
    """flow.core imports only itself and flow.errors, and no driver."""
    for name in (n for n in MODULES if _in(n, "flow.core")):
        own = {i for i in _imported_modules(name) if not _in(i, "flow.core", "flow.errors")}
        drivers = {i for i in IMPORTS[name] if _in(i.split(".")[0], *DRIVERS)}
        assert not own and not drivers, f"{name} imports {sorted(own | drivers)}"


@pytest.mark.parametrize(
    ("layer", "must_not_import"),
    [
        ("flow.persistence", ("flow.engine", "flow.worker", "flow.cli", "api", "actors", "flow.process")),
        # The engine's shell includes the Pykka actors of actors/ (one per workflow).
        ("flow.engine", ("flow.worker", "flow.cli", "api")),
        ("actors", ("flow.worker", "flow.cli", "api")),
        # A worker runs activities and reports results: it needs no database at all.
        ("flow.worker", ("flow.persistence", "flow.engine", "flow.cli", "api")),
        ("api", ("flow.engine", "flow.worker", "flow.cli", "actors")),
        ("activities", ("flow.persistence", "flow.engine", "flow.cli", "api", "actors")),
    ],
)
def test_each_layer_imports_only_downward(layer, must_not_import):
    for name in (n for n in MODULES if _in(n, layer)):
        wrong = sorted(i for i in _imported_modules(name) if _in(i, *must_not_import))
        assert not wrong, f"{name} imports {wrong}"


def test_nothing_in_the_product_imports_the_test_harness():
    for name in (n for n in MODULES if not _in(n, "flow.testing")):
        wrong = sorted(i for i in IMPORTS[name] if _in(i, "flow.testing", "tests", "bench"))
        assert not wrong, f"{name} imports {wrong}"


def test_no_import_cycle():
    graph = {name: _imported_modules(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_too_long():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_import_of_a_product_module_finds_what_it_names():
    """Every ``from <ours> import <name>`` in the product names a module or an attribute
    that exists (flow.actors itself is not imported: it builds a process)."""
    import importlib
    import importlib.util

    missing = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if node.module.split(".")[0] not in PACKAGES or node.module == "flow.actors":
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                found = hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}")
                if not found:
                    missing.append(f"{name}: from {node.module} import {alias.name}")
    assert not missing, missing
