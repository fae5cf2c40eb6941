"""Polling SELECTs whose SQL Peewee compiles once per shape.

Each background loop of an engine (event windows and owed starts, batches, schedules,
the outbox, unstarted workflows) runs a SELECT several times a second over the
partitions the engine holds. Peewee compiles a query from its expression tree at every
execution, and with 64 partitions in an ``IN`` list the compile is most of the query's
cost to the engine: about 0.8 ms of CPU each on a busy 2-core machine, where the
round trip itself is a wait, not CPU. A yappi profile of an idle engine put most of its
CPU in those compiles, and at one workflow in flight an engine's CPU per step is mostly
what its loops spend while it waits for the next event.

A :class:`CompiledSelect` keeps, for each shape of its query (the database's dialect and
what the caller says changes the SQL text: how many partitions, which optional
clauses), the query Peewee built once and its SQL; later runs bind fresh values to that
SQL and read the rows through the query's own cursor wrapper, so they come back as the
same model instances or tuples, with the same conversions. The first compile of each
shape checks that Peewee's parameters are exactly the values the caller's ``params``
gives, in order: a query whose values Peewee converts or orders otherwise is never
cached wrongly; it is compiled at every run instead (and that is logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import peewee

logger = logging.getLogger(__name__)

#: A shape whose first compile did not give the caller's parameters: compiled each time.
_UNCACHEABLE = None


def _dialect(database: peewee.Database) -> type:
    # A DatabaseProxy stands for whatever it was last pointed at (SQLite in one test,
    # PostgreSQL in the next): the SQL text depends on that database's class.
    real = getattr(database, "obj", None) or database
    return type(real)


def flattened(*args: Any) -> list[Any]:
    """The default ``params``: the arguments in order, a list or tuple (the partitions of an
    ``IN``) as its items."""
    return [v for a in args for v in (a if isinstance(a, (list, tuple)) else (a,))]


def lengths(*args: Any) -> tuple[int, ...]:
    """The default shape: the lengths of the lists and tuples among the arguments."""
    return tuple(len(a) for a in args if isinstance(a, (list, tuple)))


class CompiledSelect:
    """A SELECT built by ``build(*args)``, whose SQL is compiled once per shape and whose
    values are ``params(*args)`` (default: :func:`flattened`; see the module docstring)."""

    def __init__(
        self, name: str, build: Callable[..., Any], params: Callable[..., Sequence[Any]] | None = None
    ) -> None:
        self.name = name
        self.build = build
        self.params = params or flattened
        self._compiled: dict[Hashable, tuple[Any, str] | None] = {}

    def __repr__(self) -> str:
        return f"<CompiledSelect {self.name} shapes={len(self._compiled)}>"

    def cached(self, database: peewee.Database, *args: Any, shape: Hashable | None = None) -> bool:
        """Whether the SQL for ``args`` is kept (for tests: a query that stopped fitting its
        ``params`` would silently fall back to compiling every time)."""
        return self._compiled.get((_dialect(database), shape or lengths(*args))) is not None

    def rows(self, database: peewee.Database, *args: Any, shape: Hashable | None = None) -> list[Any]:
        """The query's rows for ``args``. ``shape`` must tell apart every ``args`` whose SQL
        text differs; by default the lengths of the lists and tuples among them (the values
        of an ``IN``), which is all that differs when the rest are bound values."""
        shape = shape or lengths(*args)
        key = (_dialect(database), shape)
        values = list(self.params(*args))
        if key not in self._compiled:
            query = self.build(*args)
            sql, compiled = query.sql()
            fits = list(compiled) == values
            self._compiled[key] = (query, sql) if fits else _UNCACHEABLE
            if not fits:
                logger.warning("%s: Peewee's parameters are not its own; compiled at every run", self.name)
            return list(query)
        entry = self._compiled[key]
        if entry is _UNCACHEABLE:
            return list(self.build(*args))
        query, sql = entry
        cursor = database.execute_sql(sql, values)
        return list(query._get_cursor_wrapper(cursor))


__all__ = ["CompiledSelect", "flattened", "lengths"]
