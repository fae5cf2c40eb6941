"""Counting the SQL statements a piece of code runs (tests and benches of query costs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def counted(database: Any) -> Iterator[list[str]]:
    """The SQL statements this thread runs on ``database`` inside the block (not those of
    other threads, such as an embedded engine's loops, which share the database object)."""
    seen: list[str] = []
    original = database.execute_sql
    me = threading.get_ident()

    def execute_sql(sql: str, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == me:
            seen.append(sql)
        return original(sql, *args, **kwargs)

    database.execute_sql = execute_sql
    try:
        yield seen
    finally:
        del database.execute_sql


__all__ = ["counted"]
