"""A step kind is a type (invariant 11; docs/design.md, "Step kinds"): what is true of one
kind is said by its :class:`~flow.core.kinds.base.StepKind` (or its spec's members), so
no module outside ``flow/core/kinds`` asks which kind a step is with ``isinstance`` on a
kind's spec class: it dispatches through ``kind_of(step)``. Read from the source; the
rule is also run on a small source that breaks it, so that a rule that finds nothing is
seen to be able to find something."""

from __future__ import annotations

import ast
import importlib

from flow.core.kinds import KINDS
from flow.core.state import StepSpec
from tests.conftest import ROOT

PACKAGES = ("flow", "actors", "api", "activities")
KINDS_FOLDER = ROOT / "flow" / "core" / "kinds"


def _spec_classes() -> set[type]:
    """Every kind's spec class (StepSpec's subclasses, once every kind is imported)."""
    assert KINDS  # the table imports every kind's module
    found: set[type] = set()
    work = [StepSpec]
    while work:
        for sub in work.pop().__subclasses__():
            found.add(sub)
            work.append(sub)
    return found


SPECS = _spec_classes()


def _resolve(dotted: str) -> object | None:
    """The object a dotted name stands for (a module's attribute, or a module's), if any.
    Not flow.actors's: importing it builds a process (as test_layers.py says)."""
    if dotted == "flow.actors" or dotted.startswith("flow.actors."):
        return None
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name, None)
        return found
    return None


def _dotted(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and (root := _dotted(node.value)) is not None:
        return [*root, node.attr]
    return None


def _classes(node: ast.expr) -> list[ast.expr]:
    """The class expressions of isinstance's second argument: a tuple or ``A | B`` of them."""
    if isinstance(node, ast.Tuple):
        return [c for element in node.elts for c in _classes(element)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _classes(node.left) + _classes(node.right)
    return [node]


def kind_checks(module: str, source: str, specs: set[type] = SPECS) -> list[str]:
    """Where ``source`` (module ``module``) tests a value against one of ``specs`` with
    ``isinstance``/``issubclass`` or a ``case`` class pattern. Names are followed through
    the module's imports (``from x import Map as M``, ``import x as y``: ``y.Map``) and its
    own classes."""
    specs_base = object()  # what a class of the module itself that is a spec resolves to
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # a local name -> the dotted name it was imported as
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            bound.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
        elif isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                bound[local] = alias.name if alias.asname else local
    own = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}

    def resolved(node: ast.expr) -> object | None:
        parts = _dotted(node)
        if parts is None:
            return None
        if len(parts) == 1 and parts[0] in own:  # the module's own class: a spec if a base is one
            bases = [resolved(base) for base in own[parts[0]].bases]
            spec_bases = [b for b in bases if b is specs_base or isinstance(b, type) and issubclass(b, StepSpec)]
            return specs_base if spec_bases else None
        return _resolve(".".join([bound[parts[0]], *parts[1:]])) if parts[0] in bound else None

    def is_spec(node: ast.expr) -> str | None:
        found = resolved(node)
        return (_dotted(node) or ["?"])[-1] if found is specs_base or any(found is s for s in specs) else None

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 2:
            if node.func.id in ("isinstance", "issubclass"):
                found += [
                    (node.lineno, f"{node.func.id}(..., {n})") for c in _classes(node.args[1]) if (n := is_spec(c))
                ]
        elif isinstance(node, ast.MatchClass) and (n := is_spec(node.cls)):
            found.append((node.lineno, f"case {n}()"))
    return [f"{module}:{line} {what}" for line, what in sorted(found)]


def test_no_module_outside_the_kinds_tests_a_steps_kind_with_isinstance():
    sources = {
        path: path.read_text()
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and KINDS_FOLDER not in path.parents
    }
    assert len(sources) > 100 and {spec.kind for spec in SPECS} == set(KINDS)  # every kind's spec class is known
    found = [hit for path, source in sources.items() for hit in kind_checks(str(path.relative_to(ROOT)), source)]
    assert found == [], "dispatch through kind_of(step) (a StepKind hook) instead: " + "; ".join(found)


def test_the_kind_rule_finds_isinstance_on_every_spelling_of_a_spec_class():
    source = """
from flow.core.kinds.map import Item, Map as M
from flow.core.state import Activity, StepSpec
from flow.core import kinds
import flow.core.kinds.child
from somewhere import Map

a = isinstance(step.spec, Item)
b = isinstance(step.spec, (M, StepSpec))
c = isinstance(step.spec, Activity | int)
d = isinstance(step.spec, kinds.map.Map)
e = isinstance(step.spec, flow.core.kinds.child.Child)
f = isinstance(step.spec, Map)
g = isinstance(step.spec, StepSpec)
h = issubclass(type(step.spec), Item)
match step.spec:
    case M(over=over):
        pass
"""
    assert kind_checks("m.py", source) == [
        "m.py:8 isinstance(..., Item)",
        "m.py:9 isinstance(..., M)",
        "m.py:10 isinstance(..., Activity)",
        "m.py:11 isinstance(..., Map)",
        "m.py:12 isinstance(..., Child)",
        "m.py:15 issubclass(..., Item)",
        "m.py:17 case M()",
    ]


def test_the_kind_rule_finds_a_spec_class_defined_in_the_module_itself():
    source = """
from dataclasses import dataclass
from flow.core.state import StepSpec

@dataclass(frozen=True)
class Undo(StepSpec):
    of: int

class Other:
    pass

a = isinstance(step.spec, Undo)
b = isinstance(step.spec, Other)
"""
    assert kind_checks("m.py", source) == ["m.py:12 isinstance(..., Undo)"]
