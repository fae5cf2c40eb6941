"""Statements prepared once per connection, executed by name (the group commit's: one round trip
for a whole batch, without planning it each time)."""

from __future__ import annotations

import weakref
from typing import Any

import peewee
import psycopg2.errors

#: The statements each open connection has prepared (forgotten with the connection).
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def execute_prepared(
    database: peewee.Database, name: str, sql: str, types: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    """EXECUTE a statement prepared once per connection (PREPARE on first use).

    Each parameter is cast to its declared type, so an empty list or a list of NULLs
    (which psycopg2 sends untyped) has the array type the statement expects. Inside a
    transaction, the first EXECUTE on a connection runs under a savepoint: failing (not yet
    prepared) would abort the transaction (a rerun's batch, a batch that takes limits' locks).
    Once the connection has it, no savepoint: two round trips fewer.
    """
    casts = [t.strip() for t in types.split(",")]
    execute = f"EXECUTE {name} (" + ", ".join(f"%s::{t}" for t in casts) + ")"
    cursor = database.cursor()
    known = _PREPARED.setdefault(cursor.connection, set())
    try:
        if database.in_transaction() and name not in known:
            with database.savepoint():
                cursor.execute(execute, params)
        else:
            cursor.execute(execute, params)
    except psycopg2.errors.InvalidSqlStatementName:
        known.discard(name)
        cursor.execute(f"PREPARE {name} ({types}) AS {sql}")
        cursor.execute(execute, params)
    known.add(name)
    rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows
