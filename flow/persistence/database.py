"""The database connection: opening it by URL, and translating driver errors.

Every unit of work runs inside :func:`unit_of_work` (a connection from the pool for
the block, driver failures turned into :class:`~flow.errors.StoreUnavailable`), or
:func:`write` for a transaction that writes. Nothing else in the code base catches a
driver exception.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import peewee
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase
from psycopg2 import extensions as psycopg2_extensions

from flow.errors import FilterTooCostly, StoreUnavailable

#: SQLite calls the progress handler every this many virtual machine instructions
#: (about a millisecond's work), so a deadline is noticed within a millisecond or so.
_PROGRESS_STEPS = 10_000
#: PostgreSQL's SQLSTATE for a statement cancelled (``statement_timeout``).
_QUERY_CANCELED = "57014"


class PooledPostgres(PooledPostgresqlDatabase):
    """Peewee's PostgreSQL pool without a round trip on every checkout.

    Peewee checks a pooled connection with ``SELECT 1`` each time it is handed out,
    while holding the pool's lock: every unit of work of every thread then waits in
    line behind one network round trip. Here only the driver's local state is
    checked; a connection the server dropped fails its next statement, the caller
    gets :class:`StoreUnavailable`, and psycopg2 has by then marked the connection
    closed, so the pool discards it.
    """

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        status = conn.get_transaction_status()
        if status == psycopg2_extensions.TRANSACTION_STATUS_UNKNOWN:
            return True
        if status != psycopg2_extensions.TRANSACTION_STATUS_IDLE:
            try:
                conn.rollback()
            except Exception:
                return True
        return False


def open_database(url: str, *, pool_size: int = 16) -> peewee.Database:
    """Build the Peewee database for ``url`` (nothing connects yet).

    PostgreSQL URLs get a connection pool. SQLite gets WAL, a busy timeout and
    ``synchronous=NORMAL`` (a commit survives a crash of the process, not
    necessarily a power loss), set as pragmas because Peewee's URL parser cannot
    take them.
    """
    scheme = url.split("://", 1)[0]
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        parsed = db_url.parse(url)
        return PooledPostgres(**parsed, max_connections=pool_size, stale_timeout=300, timeout=10)
    if scheme.startswith("sqlite"):
        pragmas = {"journal_mode": "wal", "busy_timeout": 10_000, "synchronous": "normal", "foreign_keys": 1}
        path = db_url.parse(url)["database"]
        if path == ":memory:":  # each connection would be a database of its own: one connection, not a pool
            return db_url.connect(url, pragmas=pragmas, check_same_thread=False)
        # Pooled: closing the last connection to a WAL database checkpoints it and removes
        # the WAL file, about 2 ms each time; a unit of work per connection paid it at
        # every commit (an embedded engine's start took 1.2 s, 64 partitions' recoveries).
        # No bound (as before the pool): SQLite serialises writers itself, and a thread
        # that waited for a pooled connection could wait behind one that waits for it.
        return PooledSqliteDatabase(
            path, pragmas=pragmas, check_same_thread=False, max_connections=None, stale_timeout=300
        )
    return db_url.connect(url)


def is_postgres(database: peewee.Database) -> bool:
    return isinstance(database, peewee.PostgresqlDatabase)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn driver failures into :class:`StoreUnavailable` (with a hint when the schema is missing)."""
    try:
        yield
    except (peewee.OperationalError, peewee.InterfaceError) as e:
        if "no such table" in str(e):
            raise StoreUnavailable(f"the database has no Libero Flow schema ({e}): run `flow migrate`") from e
        raise StoreUnavailable(f"database unavailable: {e}".strip()) from e
    except peewee.ProgrammingError as e:
        if "does not exist" in str(e):
            raise StoreUnavailable(
                f"the database has no Libero Flow schema ({e.args[0].splitlines()[0]}): run `flow migrate`"
            ) from e
        raise


@contextlib.contextmanager
def unit_of_work(database: peewee.Database) -> Iterator[None]:
    """One pooled connection for the block (returned afterwards), driver errors translated."""
    with translated(), database.connection_context():
        yield


@contextlib.contextmanager
def write(database: peewee.Database) -> Iterator[None]:
    """A write transaction on its own connection.

    SQLite takes the write lock up front: a read-then-write transaction that
    upgrades later fails with "database is locked" under concurrent writers.
    """
    with unit_of_work(database):
        if isinstance(database, peewee.SqliteDatabase):
            with database.atomic(lock_type="IMMEDIATE"):
                yield
        else:
            with database.atomic():
                yield


@contextlib.contextmanager
def time_budget(database: peewee.Database, seconds: float, *, parameter: str | None) -> Iterator[None]:
    """The statements of the block (inside a :func:`unit_of_work`) stop after ``seconds``
    altogether, and raise :class:`FilterTooCostly`: for a query a client shapes, whose
    cost the client decides.

    PostgreSQL: ``SET LOCAL statement_timeout`` in a transaction of the block's own (it
    ends with it; the pooled connection keeps no setting). SQLite: a progress handler
    with a deadline, removed afterwards (the connection is the thread's, reused).
    ``parameter`` names what to blame: the query parameter that made the query costly
    (422, the same query will cost the same), or None when nothing the client sent
    did (503 with ``Retry-After``: the database was slow).
    """
    if parameter is not None:
        why, retry_after_s = "narrow it, or add other filters (name, status, created_after)", None
    else:
        parameter, why, retry_after_s = "query", "the database is busy: try again later", max(1, round(seconds))
    over = FilterTooCostly(
        parameter, f"the query ran past its budget of {seconds:g} s; {why}", retry_after_s=retry_after_s
    )
    if is_postgres(database):
        try:
            with database.atomic():
                database.execute_sql(f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}")
                yield
        except Exception as e:
            # Peewee raises its own error while handling the driver's (its context),
            # which carries the SQLSTATE.
            if _QUERY_CANCELED in (getattr(e, "pgcode", None), getattr(e.__context__, "pgcode", None)):
                raise over from e
            raise
        return
    connection = database.connection()
    deadline = time.monotonic() + seconds
    fired = []

    def past_deadline() -> bool:
        if time.monotonic() > deadline:
            fired.append(True)
            return True  # nonzero: SQLite interrupts the statement
        return False

    connection.set_progress_handler(past_deadline, _PROGRESS_STEPS)
    try:
        yield
    except Exception as e:  # sqlite3's "interrupted", wrapped by Peewee or not (a fetch)
        if fired:
            raise over from e
        raise
    finally:
        connection.set_progress_handler(None, 0)
