"""Which namespace owns a row, and what a namespace's quotas count (migration 0024) and
spend (its starts-per-second row, migration 0027).

One function answers "whose is this?" for every kind of thing a URL can name, so the
API's namespace check (:mod:`api.auth`) is one door, not one per resource.
"""

from __future__ import annotations

import peewee

from flow.core.limits import Gcra
from flow.core.vocabulary import WorkflowStatus
from flow.persistence.database import is_postgres, unit_of_work

#: The kinds of things a URL names, and the table and key column that hold each.
OWNED = {
    "workflow": ("workflows", "id"),
    "definition": ("definitions", "name"),
    "schedule": ("schedules", "name"),
    "limit": ("limits", "name"),
    "event": ("trigger_events", "id"),
    "batch": ("batches", "id"),
}


def owner(database: peewee.Database, kind: str, key: str) -> str | None:
    """The namespace of the ``kind`` (a key of :data:`OWNED`) named ``key``; None when
    there is none."""
    if "\x00" in key:  # no row holds one (PostgreSQL's text cannot), and its driver refuses to send it
        return None
    table, column = OWNED[kind]
    with unit_of_work(database):
        row = database.execute_sql(
            f"SELECT namespace FROM {table} WHERE {column} = {database.param} LIMIT 1", (key,)
        ).fetchone()
    return None if row is None else str(row[0])


def limit_owners(database: peewee.Database) -> dict[str, str]:
    """Each limit that has a row (a number set), with the namespace that set it."""
    with unit_of_work(database):
        return dict(database.execute_sql("SELECT name, namespace FROM limits").fetchall())


def running(database: peewee.Database, namespace: str) -> int:
    """How many of ``namespace``'s workflows are in progress (index workflows_namespace_status)."""
    with unit_of_work(database):
        row = database.execute_sql(
            f"SELECT count(*) FROM workflows WHERE namespace = {database.param} AND status = {database.param}",
            (namespace, WorkflowStatus.IN_PROGRESS.value),
        ).fetchone()
    return int(row[0])


#: One start of a namespace's shared quota (:meth:`Gcra.take` in SQL): the first start
#: inserts the row; each later one moves its arrival time only if the start is admitted,
#: so a refused start writes nothing and returns no row. One statement, so the row's
#: lock (PostgreSQL) or the write lock (SQLite) orders concurrent takers: two processes
#: can never both take the last start.
_TAKE = (
    "INSERT INTO namespace_rates (namespace, tat) VALUES ({p}, {p}) ON CONFLICT (namespace) "
    "DO UPDATE SET tat = {greatest}(namespace_rates.tat, {p}) + {p} "
    "WHERE {greatest}(namespace_rates.tat, {p}) - {p} <= {p} RETURNING tat"
)


def take_start(database: peewee.Database, namespace: str, rate: Gcra, now: float) -> float | None:
    """Take one start of ``namespace``'s quota ``rate`` shared by every process, at ``now``
    (seconds since the Unix epoch, the caller's clock): one statement when admitted
    (None); when refused, the seconds until one would be (read with a second statement)."""
    p = database.param
    sql = _TAKE.format(p=p, greatest="GREATEST" if is_postgres(database) else "max")
    first = rate.take(None, now)
    with unit_of_work(database):
        row = database.execute_sql(sql, (namespace, first, now, rate.interval_s, now, rate.tolerance_s, now)).fetchone()
        if row is not None:
            return None
        stored = database.execute_sql(f"SELECT tat FROM namespace_rates WHERE namespace = {p}", (namespace,)).fetchone()
    return rate.wait_s(None if stored is None else float(stored[0]), now)


__all__ = ["OWNED", "limit_owners", "owner", "running", "take_start"]
