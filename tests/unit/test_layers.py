"""The package layout is the architecture (docs/design.md, "Layout"): these rules keep
it so, read from the design notes' table, so that the notes and the rule are one.
Imports are read from the source, including those inside functions and under
``TYPE_CHECKING``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("flow", "actors", "api", "activities")
#: Third-party libraries that do I/O or hold global state: the pure core imports none.
DRIVERS = ("peewee", "playhouse", "psycopg2", "pika", "dramatiq", "pykka", "falcon", "gunicorn", "requests")
DESIGN = ROOT / "docs" / "design.md"


def _layout() -> tuple[dict[str, str], dict[str, set[str]], int]:
    """docs/design.md's Layout table: each folder's (or file's) module prefix with its
    layer, each layer with the layers it may import; and the module bound its text says."""
    text = DESIGN.read_text()
    section = text[text.index("## Layout") : text.index("## ", text.index("## Layout") + 3)]
    layer_of: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        folders, layer, _, may_import = cells
        for path in re.findall(r"`([^`]+)`", folders):
            # A package's __init__.py is that one module (flow/__init__.py is not all of flow/).
            exact = "=" if path.endswith("/__init__.py") else ""
            layer_of[exact + path.removesuffix("/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")] = (
                layer
            )
        allowed[layer] = {name.strip() for name in may_import.split(",")}
    bound = int(re.search(r"modules over (\d+) lines", section).group(1))
    return layer_of, allowed, bound


LAYER_OF, ALLOWED, MAX_LINES = _layout()


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


def _layer(name: str) -> str | None:
    """The layer of the longest folder of the table that holds module ``name``."""
    if "=" + name in LAYER_OF:
        return LAYER_OF["=" + name]
    found = [prefix for prefix in LAYER_OF if name == prefix or name.startswith(prefix + ".")]
    return LAYER_OF[max(found, key=len)] if found else None


def test_the_layout_table_is_read_and_names_every_module():
    assert len(ALLOWED) >= 10 and all(layers for layers in ALLOWED.values())
    assert set().union(*ALLOWED.values()) <= set(ALLOWED), "a layer may only import layers of the table"
    homeless = sorted(name for name in MODULES if _layer(name) is None)
    assert not homeless, f"modules in no folder of docs/design.md's Layout table: {homeless}"


def test_each_layer_imports_only_what_the_layout_table_allows():
    wrong = []
    for name in MODULES:
        layer = _layer(name)
        for imported in _imported_modules(name):
            other = _layer(imported)
            if other not in ALLOWED[layer]:
                wrong.append(f"{name} ({layer}) imports {imported} ({other})")
    assert not wrong, "\n".join(wrong)


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
