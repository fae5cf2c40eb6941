"""Search attributes: typed values a workflow is found by (``GET /workflows?attr.customer=acme``).

A definition declares its attributes' names and types (``"attributes": {"customer":
"string", "amount": "number", "vip": "boolean", "due": "time"}``); a start request gives
values for some of them (:func:`check_start`: an undeclared name or a value of the wrong
type is refused, naming it); an activity sets or changes any of them with
``self.set_attribute(name, value)``, typed by its Python value (:func:`typed_value`),
carried in its result in the wire form of :func:`to_wire` / :func:`from_wire`, and
committed with that result.

A filter is one :class:`Condition` per ``attr.<name>[.<op>]`` query parameter
(:func:`parse_conditions`). A query string carries no types, so a condition's text is
read as every type it can be (:func:`readings`): ``eq`` matches a workflow whose
attribute equals any reading (``attr.code=42`` finds the number 42 and the string
``"42"``); ``gt``, ``gte``, ``lt``, ``lte`` and ``ne`` compare numbers or times only.
Each stored value lives in the one column of its type, so a reading never matches a
value of another type. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flow.core import strict_json
from flow.core.timestamps import iso, parse_iso
from flow.errors import InvalidInput

#: The types an attribute may have, and the Python values that hold them.
STRING, NUMBER, BOOLEAN, TIME = "string", "number", "boolean", "time"
TYPES = (STRING, NUMBER, BOOLEAN, TIME)
#: An attribute's name: no dots, so ``attr.<name>.<op>`` splits one way only.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_NAME = re.compile(NAME_PATTERN.replace("$", r"\Z"))
#: Most attributes a definition declares (and so a workflow has).
MAX_ATTRIBUTES = 32
#: Longest string value (the column's size).
MAX_STRING = 255
#: Most ``attr.*`` conditions in one filter: each is one index lookup.
MAX_CONDITIONS = 8
#: The query parameters' prefix.
PREFIX = "attr."
#: Operators, the SQL they stand for, and the types they compare.
OPERATORS: Mapping[str, str] = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
ORDERED_TYPES = (NUMBER, TIME)

#: The ``attributes`` of a definition: names and their types.
DECLARATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": MAX_ATTRIBUTES,
    "propertyNames": {"pattern": NAME_PATTERN},
    "additionalProperties": {"enum": list(TYPES)},
    "description": f"search attribute names ({NAME_PATTERN}) and their types: {', '.join(TYPES)}",
}
#: The ``attributes`` of a start request: values of declared attributes.
VALUES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "maxProperties": MAX_ATTRIBUTES,
    "propertyNames": {"pattern": NAME_PATTERN},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "values of the search attributes the definition declares: a string, a number, a boolean, "
    "or a time (ISO 8601 text, naive times are UTC)",
}

#: A typed value: its type and its Python value (str, float, bool, or naive UTC datetime).
Typed = tuple[str, Any]


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.match(value) is not None


def check_value(kind: str, value: Any, path: str) -> Typed:
    """``value`` (as JSON gives it) read as an attribute of type ``kind``, else
    :class:`InvalidInput` at ``path`` saying what it must be."""
    if kind == STRING and isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidInput(path, f"must be a string of at most {MAX_STRING} characters")
        problem = strict_json.text_problem(value)
        if problem:
            raise InvalidInput(path, problem)
        return STRING, value
    if kind == NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidInput(path, "must be a finite number")
        return NUMBER, float(value)
    if kind == BOOLEAN and isinstance(value, bool):
        return BOOLEAN, value
    if kind == TIME and isinstance(value, str):
        parsed = _time(value)
        if parsed is None:
            raise InvalidInput(path, "must be a time in ISO 8601, e.g. 2026-12-24T00:00:00Z")
        return TIME, parsed
    if kind == TIME and isinstance(value, datetime):
        return TIME, parse_iso(value.isoformat())
    article = "an" if kind[0] in "aeiou" else "a"
    raise InvalidInput(path, f"must be {article} {kind}" + (" (ISO 8601 text)" if kind == TIME else ""))


def check_declared(declared: Mapping[str, str], given: Mapping[str, Any] | None, *, path: str) -> dict[str, Typed]:
    """The typed values of a start request's ``given`` attributes; :class:`InvalidInput`
    at ``<path>.<name>`` for a name ``declared`` lacks or a value of the wrong type."""
    typed: dict[str, Typed] = {}
    for name, value in (given or {}).items():
        where = f"{path}.{name}"
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidInput(where, f"is not an attribute the definition declares (it declares: {known})")
        typed[name] = check_value(declared[name], value, where)
    return typed


def typed_value(name: Any, value: Any) -> Typed:
    """What ``set_attribute(name, value)`` stores: the type is the Python value's
    (``datetime`` is a time, naive means UTC); :class:`InvalidInput` naming it otherwise."""
    if not is_name(name):
        raise InvalidInput("set_attribute", f"the name {name!r} must match {NAME_PATTERN}")
    kind = (
        BOOLEAN
        if isinstance(value, bool)
        else NUMBER
        if isinstance(value, int | float)
        else TIME
        if isinstance(value, datetime)
        else STRING
        if isinstance(value, str)
        else None
    )
    if kind is None:
        raise InvalidInput(f"set_attribute({name!r})", "the value must be a str, int, float, bool or datetime")
    return check_value(kind, value, f"set_attribute({name!r})")


def to_wire(values: Mapping[str, Typed]) -> dict[str, Any]:
    """Typed values as JSON: ``{name: {"type": ..., "value": ...}}`` (times in ISO 8601)."""
    return {
        name: {"type": kind, "value": iso(value) if kind == TIME else value} for name, (kind, value) in values.items()
    }


def from_wire(raw: Any, *, path: str) -> dict[str, Typed]:
    """:func:`to_wire`'s JSON read back; :class:`InvalidInput` at ``path`` for anything else."""
    if not isinstance(raw, Mapping) or len(raw) > MAX_ATTRIBUTES:
        raise InvalidInput(path, f"must be an object of at most {MAX_ATTRIBUTES} attributes")
    typed: dict[str, Typed] = {}
    for name, entry in raw.items():
        where = f"{path}.{name}"
        if not is_name(name):
            raise InvalidInput(where, f"must be an attribute name matching {NAME_PATTERN}")
        if not isinstance(entry, Mapping) or set(entry) != {"type", "value"} or entry["type"] not in TYPES:
            raise InvalidInput(where, f'must be {{"type": one of {", ".join(TYPES)}, "value": ...}}')
        typed[name] = check_value(entry["type"], entry["value"], where)
    return typed


def shown(kind: str, value: Any) -> str | float | bool:
    """A stored value as the API shows it (times in ISO 8601 with ``Z``)."""
    if kind == TIME:
        return iso(value) or ""
    shown_value: str | float | bool = value
    return shown_value


# -- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``attr.<name>[.<op>]=<text>``: the attribute ``name`` compares by ``operator``
    (a key of :data:`OPERATORS`) with any of ``values`` (the text's typed readings);
    ``text`` as given, so that a stored filter (a batch's) reads as it was written."""

    name: str
    operator: str
    values: tuple[Typed, ...]
    text: str

    @property
    def parameter(self) -> str:
        return f"{PREFIX}{self.name}" + ("" if self.operator == "eq" else f".{self.operator}")


def readings(text: str, *, ordered: bool) -> tuple[Typed, ...]:
    """The types ``text`` can be read as: a time, a number, a boolean (``true``/``false``),
    and always a string; only numbers and times when ``ordered``."""
    found: list[Typed] = []
    number = _number(text)
    if number is not None:
        found.append((NUMBER, number))
    moment = _time(text)
    if moment is not None:
        found.append((TIME, moment))
    if ordered:
        return tuple(found)
    if text in ("true", "false"):
        found.append((BOOLEAN, text == "true"))
    if len(text) <= MAX_STRING:
        found.append((STRING, text))
    return tuple(found)


def parse_condition(parameter: str, text: str) -> Condition:
    """One ``attr.<name>[.<op>]`` query parameter; :class:`InvalidInput` naming it."""
    name, _, operator = parameter[len(PREFIX) :].partition(".")
    operator = operator or "eq"
    if not is_name(name):
        raise InvalidInput(parameter, f"must be attr.<name> or attr.<name>.<op>, the name matching {NAME_PATTERN}")
    if operator not in OPERATORS:
        raise InvalidInput(parameter, f"the operator must be one of {', '.join(OPERATORS)}")
    problem = strict_json.text_problem(text)
    if problem:
        raise InvalidInput(parameter, problem)
    values = readings(text, ordered=operator != "eq")
    if not values and operator == "eq":  # no number, time or boolean, and too long to be a stored string
        raise InvalidInput(parameter, f"a string attribute holds at most {MAX_STRING} characters: no value can match")
    if not values:
        raise InvalidInput(
            parameter,
            f"{operator} compares numbers and times: must be a number or an ISO 8601 time, not {text[:64]!r}",
        )
    return Condition(name, operator, values, text)


def parse_conditions(parameters: Iterable[tuple[str, str]]) -> tuple[Condition, ...]:
    """Every ``attr.*`` parameter of ``parameters`` (name, text pairs; a repeated one
    gives one condition per value, all of which must hold); at most :data:`MAX_CONDITIONS`."""
    conditions = tuple(parse_condition(key, text) for key, text in parameters if key.startswith(PREFIX))
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidInput(PREFIX + "*", f"a filter may have at most {MAX_CONDITIONS} attribute conditions")
    return conditions


def _number(text: str) -> float | None:
    try:
        number = float(text) if len(text) <= 64 else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _time(text: str) -> datetime | None:
    if not 10 <= len(text) <= 40 or not text[:4].isdigit():
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None
