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
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import peewee

from flow.persistence.database import is_postgres


def input_contains(database: peewee.Database, wanted: Mapping[str, Any]) -> peewee.SQL:
    """A condition on ``workflows``: its ``input_data`` contains ``wanted``."""
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
