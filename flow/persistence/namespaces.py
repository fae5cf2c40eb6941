"""Which namespace owns a row, and what a namespace's quotas count (migration 0024).

One function answers "whose is this?" for every kind of thing a URL can name, so the
API's namespace check (:mod:`api.auth`) is one door, not one per resource.
"""

from __future__ import annotations

import peewee

from flow.core.vocabulary import WorkflowStatus
from flow.persistence.database import unit_of_work

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


__all__ = ["OWNED", "limit_owners", "owner", "running"]
