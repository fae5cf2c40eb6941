"""Rules about types and purity read from the source (docs/design.md, "Types checked"):
no public function says it returns ``Any``, and the pure core reads no clock, randomness
or environment (replaying a history through ``decide()`` yields the same
decisions). Each rule is also run on a small source that breaks it, so that a rule that
finds nothing is seen to be able to find something."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

#: The packages whose public functions must say what they return.
TYPED_PACKAGES = ("flow", "actors", "api")
CORE = ROOT / "flow" / "core"


def _sources(*folders: Path) -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for folder in folders
        for path in sorted(folder.rglob("*.py"))
        if "migrations" not in path.parts
    }


def _is_any(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return False
    return (isinstance(node, ast.Name) and node.id == "Any") or (isinstance(node, ast.Attribute) and node.attr == "Any")


def returns_any(name: str, source: str) -> list[str]:
    """Public module-level functions and public methods of public classes annotated
    ``-> Any`` in ``source`` (nested functions are no one's interface)."""
    found = []

    def visit(body: list[ast.stmt], owner: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{owner}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not node.name.startswith("_") and _is_any(node.returns):
                    found.append(f"{name}:{node.lineno} {owner}{node.name}")

    visit(ast.parse(source).body, "")
    return found


#: Modules the pure core must not import at all, and names it must not import from others.
FORBIDDEN_MODULES = {"time", "random", "secrets"}
FORBIDDEN_NAMES = {("uuid", "uuid1"), ("uuid", "uuid4"), ("os", "environ"), ("os", "getenv"), ("os", "getenvb")}
#: Calls that read a clock, randomness or the environment, whatever they are called on
#: (``turn.now``, a value passed in, is not a call).
FORBIDDEN_CALLS = {"now", "utcnow", "today", "uuid1", "uuid4", "getenv", "getenvb", "urandom"}
#: Attributes that are the environment or a clock even when not called (``clock=datetime.now``).
FORBIDDEN_ATTRIBUTES = {"environ", "environb"}
CLOCK_OWNERS = {"datetime", "date"}


def impurities(name: str, source: str) -> list[str]:
    """Where ``source`` reads a clock, randomness or the environment."""
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                if root in FORBIDDEN_MODULES or (root, alias.name) in FORBIDDEN_NAMES:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        elif isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_CALLS and id(node) in called:
                found.append((node.lineno, f".{node.attr}()"))
            elif node.attr in FORBIDDEN_ATTRIBUTES or (
                node.attr in FORBIDDEN_CALLS and isinstance(node.value, ast.Name) and node.value.id in CLOCK_OWNERS
            ):
                found.append((node.lineno, f".{node.attr}"))
    return [f"{name}:{line} {what}" for line, what in sorted(found)]


def test_no_public_function_of_flow_actors_or_api_returns_any():
    sources = _sources(*(ROOT / package for package in TYPED_PACKAGES))
    assert len(sources) > 100
    found = [hit for name, source in sources.items() for hit in returns_any(name, source)]
    assert found == []


def test_the_return_rule_finds_public_functions_and_methods_returning_any():
    source = """
from typing import Any
import typing

def loads(raw: str) -> Any: ...
def quoted() -> "Any": ...
def qualified() -> typing.Any: ...
def _private() -> Any: ...
def typed() -> dict[str, Any]: ...

class Client:
    def get(self) -> Any: ...
    def _helper(self) -> Any: ...
    def outer(self) -> int:
        def inner() -> Any: ...
        return 1

class _Hidden:
    def get(self) -> Any: ...
"""
    assert returns_any("m.py", source) == [
        "m.py:5 loads",
        "m.py:6 quoted",
        "m.py:7 qualified",
        "m.py:12 Client.get",
    ]


def test_the_core_reads_no_clock_randomness_or_environment():
    sources = _sources(CORE)
    assert "flow/core/decide.py" in sources
    found = [hit for name, source in sources.items() for hit in impurities(name, source)]
    assert found == []


def test_the_purity_rule_finds_clocks_randomness_and_the_environment():
    source = """
import time
import random, os.path
import secrets as s
from time import monotonic
from uuid import uuid4
from uuid import uuid5
from os import environ, getenv
from datetime import datetime, UTC
import uuid

a = datetime.now(UTC)
b = datetime.utcnow()
c = date.today()
d = uuid.uuid4()
e = uuid.uuid5(uuid.NAMESPACE_URL, "x")
f = os.environ["HOME"]
g = os.getenv("HOME")
h = os.urandom(8)
i = turn.now
def later(clock=datetime.now): ...
"""
    assert impurities("m.py", source) == [
        "m.py:2 import time",
        "m.py:3 import random",
        "m.py:4 import secrets",
        "m.py:5 from time import monotonic",
        "m.py:6 from uuid import uuid4",
        "m.py:8 from os import environ",
        "m.py:8 from os import getenv",
        "m.py:12 .now()",
        "m.py:13 .utcnow()",
        "m.py:14 .today()",
        "m.py:15 .uuid4()",
        "m.py:17 .environ",
        "m.py:18 .getenv()",
        "m.py:19 .urandom()",
        "m.py:21 .now",
    ]
