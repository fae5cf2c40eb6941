"""Finding workflows by what they were started with: a JSON filter contained in
``input_data`` (``GET /workflows?input=...``), the same answer on both databases.

The meaning is PostgreSQL's ``jsonb @>``: each key of a filter object is in the input
with a value that contains the filter's value (nested objects too); each element of a
filter array is contained in some element of the input's array; scalars are equal and
of the same JSON type (``1`` matches ``1.0``, ``true`` does not match ``1``).

- PostgreSQL: ``input_data::jsonb @> filter``, served by the GIN index
  ``workflows_input`` (migration 0006).
- SQLite: the same test written with SQLite's JSON functions (``json_type``,
  ``json_each``), evaluated in SQL, so paging, ordering and the other filters stay in
  one query and a page is always full. It is a scan (SQLite has no index for
  containment: an expression index would need one per key path, unknown in
  advance), which suits the embedded mode's sizes. Keys are matched as bound
  parameters against ``json_each``'s ``key`` rather than spelled into JSON paths,
  which cannot hold every key (SQLite's path syntax has no escape for ``"``).

A filter is client input, and what it costs grows with its shape: each level of
nesting is a nested subquery (SQLite's parser refuses more than 9), each value one
more ``EXISTS`` (SQLite refuses an expression tree deeper than 1,000: an array of 493
elements), and each array element is compared with every element of the input's
array at that place. So :func:`check` holds a filter to :data:`MAX_DEPTH` levels,
:data:`MAX_ARRAY` elements per array and :data:`MAX_VALUES` values in all, before any
SQL is built, on both databases alike; the time a query may take is budgeted apart
(:func:`flow.persistence.database.time_budget`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import peewee

from flow.errors import FilterTooCostly
from flow.persistence.database import is_postgres

#: Deepest filter: objects and arrays nested this many levels (``{"a": 1}`` is one).
MAX_DEPTH = 8
#: Most elements of one array of a filter.
MAX_ARRAY = 32
#: Most values in a filter, at every level together (each key's value and each array
#: element, objects and arrays included).
MAX_VALUES = 128
#: The query parameter a filter comes in, named by the errors.
PARAMETER = "input"


def check(wanted: Mapping[str, Any]) -> None:
    """Raise :class:`FilterTooCostly` naming the limit unless ``wanted`` is within
    :data:`MAX_DEPTH`, :data:`MAX_ARRAY` and :data:`MAX_VALUES` (iterative: a deep
    filter never recurses)."""
    values = 0
    stack: list[tuple[Any, int, str]] = [(wanted, 1, "$")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, Mapping):
            children = [(inner, f"{path}.{key}") for key, inner in value.items()]
        elif isinstance(value, list):
            if len(value) > MAX_ARRAY:
                raise FilterTooCostly(
                    PARAMETER,
                    f"the array at {path} has {len(value)} elements; a filter's arrays may have at most {MAX_ARRAY}",
                )
            children = [(inner, f"{path}[{index}]") for index, inner in enumerate(value)]
        else:
            continue
        if depth > MAX_DEPTH:
            raise FilterTooCostly(PARAMETER, f"nests objects and arrays deeper than {MAX_DEPTH} levels (at {path})")
        values += len(children)
        if values > MAX_VALUES:
            raise FilterTooCostly(
                PARAMETER, f"holds more than {MAX_VALUES} values; a filter may hold at most {MAX_VALUES}"
            )
        stack.extend((inner, depth + 1, where) for inner, where in children)


def input_contains(database: peewee.Database, wanted: Mapping[str, Any]) -> peewee.SQL:
    """A condition on ``workflows``: its ``input_data`` contains ``wanted``; raises
    :class:`FilterTooCostly` for a filter beyond the limits (:func:`check`)."""
    check(wanted)
    if is_postgres(database):
        # The expression must read exactly as the index's for PostgreSQL to use it.
        return peewee.SQL(f"(input_data::jsonb) @> {database.param}::jsonb", [json.dumps(wanted)])
    params: list[Any] = []
    sql = _contains("input_data", "json_type(input_data)", wanted, params, itertools.count(1), database.param)
    return peewee.SQL(f"({sql})", params)


def _contains(value: str, kind: str, wanted: Any, params: list[Any], aliases: Iterator[int], mark: str) -> str:
    """SQL that is true when the JSON ``value`` (of JSON type ``kind``, both SQL
    expressions) contains ``wanted``; appends its parameters to ``params`` in order."""
    if isinstance(wanted, Mapping):
        parts = [f"{kind} = 'object'"]
        for key, inner in wanted.items():
            j = f"j{next(aliases)}"
            params.append(key)
            test = _contains(f"{j}.value", f"{j}.type", inner, params, aliases, mark)
            parts.append(f"EXISTS (SELECT 1 FROM json_each({value}) AS {j} WHERE {j}.key = {mark} AND {test})")
        return " AND ".join(parts)
    if isinstance(wanted, list):
        parts = [f"{kind} = 'array'"]
        for inner in wanted:
            j = f"j{next(aliases)}"
            test = _contains(f"{j}.value", f"{j}.type", inner, params, aliases, mark)
            parts.append(f"EXISTS (SELECT 1 FROM json_each({value}) AS {j} WHERE {test})")
        return " AND ".join(parts)
    if wanted is None:
        return f"{kind} = 'null'"
    if isinstance(wanted, bool):  # before int: True is an int to Python
        return f"{kind} = '{'true' if wanted else 'false'}'"
    params.append(wanted)
    if isinstance(wanted, int | float):
        return f"{kind} IN ('integer', 'real') AND {value} = {mark}"
    return f"{kind} = 'text' AND {value} = {mark}"
