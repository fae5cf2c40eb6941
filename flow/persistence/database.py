"""The database connection: opening it by URL, and translating driver errors.

Every unit of work runs inside :func:`unit_of_work` (a connection from the pool for
the block, driver failures turned into :class:`~flow.errors.StoreUnavailable`), or
:func:`write` for a transaction that writes. Nothing else in the code base catches a
driver exception.

A PostgreSQL connection never waits for ever (docs/design.md, "When the network lies"):
one on which the server sends nothing for ``silence_s`` (``FLOW_DATABASE_TIMEOUT_S``) —
connecting, or waiting on a statement — is given up (:func:`_wait_for_the_database`),
and a block may set a tighter deadline of its own (:func:`deadline`: a lease round
must end before its lease does), or a looser silence bound (:func:`patience`: a
migration's statement may rightly run for minutes without a byte).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import peewee
import psycopg2
from playhouse import db_url
from playhouse.pool import MaxConnectionsExceeded, PoolConnection, PooledPostgresqlDatabase, PooledSqliteDatabase
from psycopg2 import extensions as psycopg2_extensions

from flow.errors import FilterTooCostly, StoreUnavailable

#: SQLite calls the progress handler every this many virtual machine instructions
#: (about a millisecond's work), so a deadline is noticed within a millisecond or so.
_PROGRESS_STEPS = 10_000
#: PostgreSQL's SQLSTATE for a statement cancelled (``statement_timeout``).
_QUERY_CANCELED = "57014"


class PooledPostgres(PooledPostgresqlDatabase):
    """Peewee's PostgreSQL pool, with no network wait under its locks.

    Peewee opens a new connection while holding its database lock and its pool lock,
    and checks a pooled one with a round trip (``SELECT 1``, or a rollback) under the
    pool lock: every thread's checkout and check-in waits in line behind one network
    wait. On a silent database each wait lasts ``FLOW_DATABASE_TIMEOUT_S``, so requests
    queued behind each other (9 requests a process took 8.6 s with a 2 s limit). Here
    only the bookkeeping is locked: a new connection is opened outside the locks (its
    slot reserved), and pooled connections are judged by the driver's local state. A
    connection the server dropped fails its next statement, the caller gets
    :class:`StoreUnavailable`, and psycopg2 has by then marked it closed, so the pool
    discards it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Connections being opened (outside the pool lock), counted against the pool's size.
        self._opening = 0

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Peewee's ``PooledDatabase.connect``, but opening outside the locks (class docstring)."""
        if not self._state.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        give_up_at = time.monotonic() + self._wait_timeout
        while (conn := self._checkout()) is None:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
            with self._pool_available:
                self._pool_available.wait(timeout=min(remaining, 1.0))
        self._state.reset()
        self._state.set_connection(conn)
        if self.server_version is None:
            self._set_server_version(conn)
        self._initialize_connection(conn)
        return True

    def _checkout(self) -> Any:
        """A pooled connection, or a new one; None when the pool is at its size."""
        with self._pool_lock:
            while self._connections:
                stamp, _, conn = heapq.heappop(self._connections)
                if self._is_closed(conn):
                    self._close_raw(conn)
                    continue
                if self._stale_timeout and self._is_stale(stamp):
                    self._close_raw(conn)
                    continue
                self._in_use[self.conn_key(conn)] = PoolConnection(stamp, conn, time.time())
                return conn
            if self._max_connections and len(self._in_use) + self._opening >= self._max_connections:
                return None
            self._opening += 1
        try:
            with getattr(peewee, "__exception_wrapper__"):  # noqa: B009 - the driver's errors, as Peewee wraps them
                conn = peewee.PostgresqlDatabase._connect(self)
        finally:
            with self._pool_lock:
                self._opening -= 1
                self._pool_available.notify()
        with self._pool_lock:
            now = time.time()
            self._in_use[self.conn_key(conn)] = PoolConnection(now, conn, now)
        return conn

    def _is_closed(self, conn: Any) -> bool:
        # Only idle connections go back to the pool (_can_reuse): anything else is broken.
        return bool(conn.closed) or conn.get_transaction_status() != psycopg2_extensions.TRANSACTION_STATUS_IDLE

    def _can_reuse(self, conn: Any) -> bool:
        # Peewee rolls back a connection handed back in a transaction, under the pool
        # lock; closing it costs no wait (and Peewee's blocks end their transactions).
        return not self._is_closed(conn)


#: This thread's deadline (``time.monotonic()``) for waiting on the database, if any (:func:`deadline`).
_thread_deadline = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every wait on a PostgreSQL server in the block ends by ``seconds`` from now (or
    earlier, inside a tighter block), failing with :class:`StoreUnavailable`: for work
    that is worthless late, like renewing a lease that will have expired."""
    outer = getattr(_thread_deadline, "at", None)
    at = time.monotonic() + seconds
    _thread_deadline.at = at if outer is None else min(outer, at)
    try:
        yield
    finally:
        _thread_deadline.at = outer


@contextlib.contextmanager
def patience(silence_s: float = math.inf) -> Iterator[None]:
    """Waits on a PostgreSQL server in the block may last ``silence_s`` without a byte
    (default: as long as the statement runs) instead of the connection's own bound.

    For an operator's foreground work whose statements are long by nature: a migration
    that builds an index on a large table, or waits for a lock an old engine holds, sends
    nothing until it is done, which a silence bound cannot tell from a stalled link. A
    dead peer is still noticed by the connection's TCP keepalives.
    """
    outer = getattr(_thread_deadline, "silence_s", None)
    _thread_deadline.silence_s = silence_s
    try:
        yield
    finally:
        _thread_deadline.silence_s = outer


def _wait_for_the_database(conn: Any) -> None:
    """psycopg2's wait callback: wait for the server like libpq does, but no longer than
    the connection's ``silence_s`` without a byte, nor past this thread's :func:`deadline`.

    Why not libpq's own settings: ``connect_timeout`` covers connecting only, and TCP
    keepalives and ``tcp_user_timeout`` notice a dead peer, not a silent one (a proxy or
    a stalled server that acknowledges every packet and answers nothing). Giving up
    leaves the connection broken (psycopg2 marks it closed), so the pool discards it.
    """
    silence_s = getattr(_thread_deadline, "silence_s", None) or getattr(conn, "silence_s", None) or math.inf
    at = getattr(_thread_deadline, "at", None) or math.inf
    while True:
        state = conn.poll()
        if state == psycopg2_extensions.POLL_OK:
            return
        poller = select.poll()  # not select.select: a busy process may hold fds past 1024
        poller.register(conn.fileno(), select.POLLIN if state == psycopg2_extensions.POLL_READ else select.POLLOUT)
        wait_s = min(silence_s, at - time.monotonic())
        if wait_s <= 0 or not poller.poll(None if wait_s == math.inf else wait_s * 1000):
            if wait_s == silence_s:
                raise psycopg2.OperationalError(
                    f"the database sent nothing for {silence_s:g} s (FLOW_DATABASE_TIMEOUT_S): the server or the link "
                    "to it is down or stalled"
                )
            raise psycopg2.OperationalError("the database did not answer before this unit of work's deadline")


def _network_params(silence_s: float) -> dict[str, Any]:
    """libpq and server settings for a connection given up after ``silence_s`` of silence."""
    return {
        "connection_factory": type(
            "SilenceBoundConnection", (psycopg2_extensions.connection,), {"silence_s": silence_s}
        ),
        # A dead peer (a host gone, a route dropped) is noticed by the kernel too, sooner
        # than TCP's own retransmission timeout of about 15 minutes.
        "keepalives": 1,
        "keepalives_idle": max(1, round(silence_s / 2)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": round(silence_s * 1000),
        # The server's side of the same bound: a transaction whose client has gone silent
        # (cut off mid-transaction) is rolled back, and its locks (a commit's lease rows,
        # which a takeover skips) let go, after as long as the client waits itself.
        "options": f"-c idle_in_transaction_session_timeout={round(silence_s * 1000)}",
    }


def open_database(url: str, *, pool_size: int = 16, silence_s: float | None = None) -> peewee.Database:
    """Build the Peewee database for ``url`` (nothing connects yet).

    PostgreSQL URLs get a connection pool, and with ``silence_s`` connections that
    never wait longer than that on a silent server (the module docstring). SQLite gets
    WAL, a busy timeout and ``synchronous=NORMAL`` (a commit survives a crash of the
    process, not necessarily a power loss), set as pragmas because Peewee's URL parser
    cannot take them.
    """
    scheme = url.split("://", 1)[0]
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        parsed = db_url.parse(url)
        if silence_s is not None:
            # Process-wide, and harmless for connections without ``silence_s`` (they wait as libpq would).
            psycopg2_extensions.set_wait_callback(_wait_for_the_database)
            parsed.update(_network_params(silence_s))
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
    except MaxConnectionsExceeded as e:  # every pooled connection busy (waiting on a slow database) for 10 s
        raise StoreUnavailable(f"database unavailable: {e}") from e
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
