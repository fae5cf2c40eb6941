"""PostgreSQL's work over a bench run: statements, transactions, rows written, WAL bytes.

- Statements come from ``pg_stat_statements`` when the server loads it
  (``shared_preload_libraries``; ``CREATE EXTENSION`` alone is not enough, and the bench
  never restarts a server to load it): calls summed over the bench's database, exact and
  immediate. Without it, ``statements`` is None and the figures stand on
  ``pg_stat_database`` alone.
- Transactions (``xact_commit``) and rows written (``tup_inserted + tup_updated +
  tup_deleted``) come from ``pg_stat_database`` for the bench's database. PostgreSQL 15
  flushes a backend's counters at most once a second while it works, and a backend that
  went idle 10 s after (``PGSTAT_IDLE_INTERVAL``), so :meth:`PgCounters.settled` reads
  them 11 s after the run (a smoke run with 2.2 s counted a fifth of the floor's
  commits). It cannot wait for them to stop moving: the engines' own loops (leases,
  timers, outbox) keep committing, and their share over the run is part of the figure.
  The snapshot before a run is read at once: the run before it was settled.
- WAL bytes are ``pg_current_wal_lsn()`` differences: the whole server's, so on a shared
  machine they include other databases' writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

#: How long :meth:`PgCounters.settled` waits for the backends' counters to be flushed.
SETTLE_S = 11.0


@dataclass(frozen=True)
class PgSnapshot:
    xact_commit: int
    rows_written: int
    wal_lsn: str
    statements: int | None


class PgCounters:
    """Reads the counters of ``conn``'s database (an autocommit psycopg2 connection)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements_available = self._statements() is not None

    def _one(self, query: str) -> tuple[Any, ...]:
        with self.conn.cursor() as cur:
            cur.execute(query)
            return tuple(cur.fetchone())

    def _statements(self) -> int | None:
        try:
            self._one("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            (calls,) = self._one(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return int(calls)
        except Exception:  # noqa: BLE001 - not loaded by the server: the fallback says so (None)
            return None

    def snapshot(self) -> PgSnapshot:
        self._one("SELECT pg_stat_clear_snapshot()")  # read the counters as they are now, not as cached
        xact, rows = self._one(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        (lsn,) = self._one("SELECT pg_current_wal_lsn()::text")
        return PgSnapshot(int(xact), int(rows), lsn, self._statements() if self.statements_available else None)

    def settled(self) -> PgSnapshot:
        """The counters as of now: WAL and statements read at once (they do not lag), the
        flushed ones :data:`SETTLE_S` later."""
        now = self.snapshot()
        time.sleep(SETTLE_S)
        return replace(self.snapshot(), wal_lsn=now.wal_lsn, statements=now.statements)

    def wal_bytes(self, before: PgSnapshot, after: PgSnapshot) -> int:
        (diff,) = self._one(f"SELECT pg_wal_lsn_diff('{after.wal_lsn}', '{before.wal_lsn}')::bigint")
        return int(diff)

    def per(self, before: PgSnapshot, after: PgSnapshot, steps: int) -> dict[str, float | None]:
        """The work between two snapshots, per step."""
        statements = None
        if before.statements is not None and after.statements is not None:
            statements = round((after.statements - before.statements) / steps, 2)
        return {
            "pg_statements_per_step": statements,
            "pg_xacts_per_step": round((after.xact_commit - before.xact_commit) / steps, 3),
            "pg_rows_written_per_step": round((after.rows_written - before.rows_written) / steps, 2),
            "pg_wal_bytes_per_step": round(self.wal_bytes(before, after) / steps, 1),
        }


__all__ = ["PgCounters", "PgSnapshot"]
