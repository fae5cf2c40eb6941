"""Search attributes in the database: the table ``workflow_attributes`` (migration 0021),
one row per workflow and name with the value in the column of its type.

Written when a workflow is created (:mod:`flow.persistence.starts`) and by the group
commit of an activity's result that set some (:mod:`flow.persistence.group_commit`),
fenced like the rest of that commit; read for the workflow view; searched by
:func:`condition`, which the list of workflows (and everything that reuses its filter)
adds per ``attr.*`` parameter. docs/design.md, "Search attributes", says why a table of
typed columns rather than a JSON column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import peewee

from flow.core.attributes import (
    BOOLEAN,
    MAX_ATTRIBUTES,
    NUMBER,
    OPERATORS,
    STRING,
    TIME,
    Condition,
    Typed,
    from_wire,
    shown,
)
from flow.core.steps import HistoryEntry
from flow.core.vocabulary import HistoryType
from flow.persistence.database import is_postgres

#: The typed columns, by type.
COLUMNS: Mapping[str, str] = {STRING: "str_value", NUMBER: "num_value", BOOLEAN: "bool_value", TIME: "time_value"}
#: A row: workflow id, name, then one value per typed column (all but one NULL).
Row = tuple[str, str, str | None, float | None, bool | None, datetime | None]
#: PostgreSQL array types of a batch of rows, column by column (for the prepared statements).
ARRAY_TYPES = ("text[]", "text[]", "text[]", "float8[]", "bool[]", "timestamp[]")
#: Upserts a batch of rows given as those arrays ($1..$6 renumbered by :func:`upsert_sql`):
#: a name the workflow has takes its new value; a new name is kept while the workflow has
#: fewer than :data:`MAX_ATTRIBUTES` (counted before the statement, plus the new names
#: before it in the batch, in the order given).
_UPSERT = (
    "INSERT INTO workflow_attributes (workflow_id, name, str_value, num_value, bool_value, time_value) "
    "SELECT workflow_id, name, s, n, b, t FROM (SELECT x.*, k.name IS NOT NULL AS known, "
    "(SELECT count(*) FROM workflow_attributes c WHERE c.workflow_id = x.workflow_id) AS held, "
    "row_number() OVER (PARTITION BY x.workflow_id, k.name IS NULL ORDER BY x.i) AS rank "
    "FROM unnest({0}, {1}, {2}, {3}, {4}, {5}) WITH ORDINALITY AS x(workflow_id, name, s, n, b, t, i) "
    "LEFT JOIN workflow_attributes k ON k.workflow_id = x.workflow_id AND k.name = x.name {where}) AS y "
    f"WHERE known OR held + rank <= {MAX_ATTRIBUTES} "
    "ON CONFLICT (workflow_id, name) DO UPDATE SET str_value = EXCLUDED.str_value, "
    "num_value = EXCLUDED.num_value, bool_value = EXCLUDED.bool_value, time_value = EXCLUDED.time_value"
)


def rows(workflow_id: str, values: Mapping[str, Typed]) -> list[Row]:
    """``values`` of ``workflow_id`` as rows."""
    return [
        (
            workflow_id,
            name,
            value if kind == STRING else None,
            value if kind == NUMBER else None,
            value if kind == BOOLEAN else None,
            value if kind == TIME else None,
        )
        for name, (kind, value) in values.items()
    ]


def set_by(workflow_id: str, history: Iterable[tuple[HistoryEntry, Any]]) -> list[Row]:
    """The rows that ``history``'s accepted results set (``decide`` records a result's
    attributes in its entry only when the result is not stale), in order."""
    found: list[Row] = []
    for entry, _ in history:
        if entry.type is HistoryType.ACTIVITY_RESULT and "attributes" in entry.data:
            found.extend(rows(workflow_id, from_wire(entry.data["attributes"], path="attributes")))
    return found


def last_wins(changes: Iterable[Row]) -> list[Row]:
    """One row per (workflow, name), the last given: a statement may not upsert one row twice."""
    return list({(row[0], row[1]): row for row in changes}.values())


def arrays(batch: Sequence[Row]) -> list[list[Any]]:
    """``batch`` column by column, as :data:`ARRAY_TYPES` says (six lists)."""
    return [list(column) for column in zip(*batch, strict=True)] if batch else [[] for _ in ARRAY_TYPES]


def upsert_sql(first: int, *, only_written: bool = False) -> str:
    """The PostgreSQL upsert of a batch of rows passed as six arrays from parameter
    ``$first`` on; ``only_written``: only rows of workflows the enclosing statement's
    ``w`` updated (the group commit's fence and version check)."""
    where = "WHERE x.workflow_id IN (SELECT id FROM w) " if only_written else ""
    return _UPSERT.format(*(f"${first + i}" for i in range(6)), where=where)


def write(database: peewee.Database, batch: Sequence[Row]) -> None:
    """Upsert ``batch`` row by row (SQLite; the caller's transaction), a new name only while
    its workflow has fewer than :data:`MAX_ATTRIBUTES` (as :data:`_UPSERT`)."""
    mark = database.param
    sql = (
        "INSERT INTO workflow_attributes (workflow_id, name, str_value, num_value, bool_value, time_value) "
        f"SELECT {', '.join([mark] * 6)} WHERE EXISTS (SELECT 1 FROM workflow_attributes "
        f"WHERE workflow_id = {mark} AND name = {mark}) "
        f"OR (SELECT count(*) FROM workflow_attributes WHERE workflow_id = {mark}) < {MAX_ATTRIBUTES} "
        "ON CONFLICT (workflow_id, name) DO UPDATE SET "
        "str_value = excluded.str_value, num_value = excluded.num_value, bool_value = excluded.bool_value, "
        "time_value = excluded.time_value"
    )
    for row in last_wins(batch):
        values = [str(v) if isinstance(v, datetime) else v for v in row]
        database.execute_sql(sql, [*values, row[0], row[1], row[0]])


def read(database: peewee.Database, workflow_id: str) -> dict[str, Any]:
    """A workflow's attributes by name, as the API shows them (in the caller's unit of work)."""
    cursor = database.execute_sql(
        "SELECT name, str_value, num_value, bool_value, time_value FROM workflow_attributes "
        f"WHERE workflow_id = {database.param} ORDER BY name",
        (workflow_id,),
    )
    found: dict[str, Any] = {}
    for name, *values in cursor.fetchall():
        for kind, value in zip(COLUMNS, values, strict=True):
            if value is not None:
                found[name] = shown(kind, _stored(kind, value))
    return found


def delete(database: peewee.Database, workflow_ids: Sequence[str]) -> None:
    """Delete the attributes of ``workflow_ids`` (before the workflows themselves)."""
    if workflow_ids:
        marks = ", ".join([database.param] * len(workflow_ids))
        database.execute_sql(f"DELETE FROM workflow_attributes WHERE workflow_id IN ({marks})", list(workflow_ids))


def condition(database: peewee.Database, wanted: Condition, workflow_id: Any) -> peewee.Expression:
    """``workflow_id`` (a column of the outer query) has attribute ``wanted.name`` comparing
    as ``wanted`` says with one of its readings: served by the index of each reading's column."""
    mark, params = database.param, [wanted.name]
    tests = []
    for kind, value in wanted.values:
        column = COLUMNS[kind]
        tests.append(f"{column} {OPERATORS[wanted.operator]} {mark}")
        params.append(str(value) if isinstance(value, datetime) and not is_postgres(database) else value)
    inner = peewee.SQL(
        f"SELECT workflow_id FROM workflow_attributes WHERE name = {mark} AND ({' OR '.join(tests)})", params
    )
    return workflow_id.in_(peewee.NodeList((inner,), parens=True))


def _stored(kind: str, value: Any) -> Any:
    """A column's value as Python: SQLite gives times as text and booleans as 0/1."""
    if kind == TIME and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind == BOOLEAN:
        return bool(value)
    if kind == NUMBER:
        return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
    return value
