"""The lease table and the engines' heartbeats (docs/design.md, "Partitions, leases and
fencing"). On PostgreSQL every time here is the database's clock, so that engines
whose clocks disagree still agree on who holds what."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

import peewee

from flow.clock import utcnow
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.models import EngineRecord, PartitionLease


class LeaseTable:
    """``partition_leases`` and ``engines``: who holds which partition, under which epoch."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        self.postgres = is_postgres(database)

    def heartbeat(self, engine_id: str, *, partitions_held: int, refused_commits: int, started_at: datetime) -> None:
        with write(self.database):
            updated = (
                EngineRecord.update(
                    heartbeat_at=self._now(), partitions_held=partitions_held, refused_commits=refused_commits
                )
                .where(EngineRecord.id == engine_id)
                .execute()
            )
            if not updated:
                host, pid = engine_host_pid(engine_id)
                EngineRecord.insert(
                    id=engine_id,
                    host=host,
                    pid=pid,
                    started_at=started_at,
                    heartbeat_at=self._now(),
                    partitions_held=partitions_held,
                    refused_commits=refused_commits,
                ).execute()

    def live_engines(self, *, within_s: float) -> list[str]:
        """Engines that heartbeated within ``within_s``, by id; long-dead ones are forgotten."""
        with write(self.database):
            EngineRecord.delete().where(EngineRecord.heartbeat_at < self._in(-within_s * 20)).execute()
            rows = EngineRecord.select(EngineRecord.id).where(EngineRecord.heartbeat_at >= self._in(-within_s))
            return sorted(r.id for r in rows)

    def forget_engine(self, engine_id: str) -> None:
        with write(self.database):
            EngineRecord.delete().where(EngineRecord.id == engine_id).execute()

    def _now(self) -> Any:
        """The database's clock on PostgreSQL (every engine then measures leases against the
        same clock, whatever its own says); the process's on SQLite (one host)."""
        return peewee.SQL("(now() AT TIME ZONE 'UTC')") if self.postgres else utcnow()

    def _in(self, seconds: float) -> Any:
        if self.postgres:
            return peewee.SQL("(now() AT TIME ZONE 'UTC') + %s * interval '1 second'", (seconds,))
        return utcnow() + timedelta(seconds=seconds)

    def renew(self, engine_id: str, held: dict[int, int], *, lease_s: float) -> dict[int, int]:
        """Extend the leases of ``held`` that are still ours under their epoch; return those."""
        if not held:
            return {}
        with write(self.database):
            rows = list(
                PartitionLease.select(PartitionLease.partition, PartitionLease.epoch)
                .where((PartitionLease.partition.in_(list(held))) & (PartitionLease.owner == engine_id))
                .tuples()
            )
            still = {p: e for p, e in rows if held.get(p) == e}
            if still:
                PartitionLease.update(expires_at=self._in(lease_s)).where(
                    PartitionLease.partition.in_(list(still)) & (PartitionLease.owner == engine_id)
                ).execute()
            return still

    def acquire(self, engine_id: str, count: int, *, lease_s: float, dead_owners: set[str]) -> dict[int, int]:
        """Take up to ``count`` partitions that nobody holds (or whose lease expired, or whose
        owner is known dead), bumping each one's epoch; return ``partition -> epoch``.

        A lease of ``engine_id``'s own that expired is taken too: the engine renews every
        partition it holds before it acquires, so such a row is one it does not know it
        holds (an acquisition committed while the client's deadline ran out). Left out, it
        was never renewed nor taken again, by this engine or by the others at their fair
        share: a partition nobody served, its workflows stuck (the soak, python -m bench.soak).
        """
        if count <= 0:
            return {}
        with write(self.database):
            free = (PartitionLease.owner.is_null()) | (PartitionLease.expires_at < self._now())
            if dead_owners:
                free |= PartitionLease.owner.in_(list(dead_owners))
            query = (
                PartitionLease.select(PartitionLease.partition)
                .where(free)
                .order_by(PartitionLease.partition)
                .limit(count)
            )
            if self.postgres:
                query = query.for_update("FOR UPDATE SKIP LOCKED")
            partitions = [r.partition for r in query]
            if not partitions:
                return {}
            PartitionLease.update(owner=engine_id, epoch=PartitionLease.epoch + 1, expires_at=self._in(lease_s)).where(
                PartitionLease.partition.in_(partitions)
            ).execute()
            rows = PartitionLease.select(PartitionLease.partition, PartitionLease.epoch).where(
                PartitionLease.partition.in_(partitions)
            )
            return {p: e for p, e in rows.tuples()}

    def release(self, engine_id: str, partition: int, epoch: int) -> None:
        with write(self.database):
            PartitionLease.update(owner=None, expires_at=None).where(
                (PartitionLease.partition == partition)
                & (PartitionLease.owner == engine_id)
                & (PartitionLease.epoch == epoch)
            ).execute()

    def lease_owners(self) -> dict[int, tuple[str | None, int, datetime | None]]:
        with unit_of_work(self.database):
            return {
                p: (o, e, x)
                for p, o, e, x in PartitionLease.select(
                    PartitionLease.partition, PartitionLease.owner, PartitionLease.epoch, PartitionLease.expires_at
                ).tuples()
            }


def engine_host_pid(engine_id: str) -> tuple[str, int]:
    """``host:pid:nonce`` -> ``(host, pid)``."""
    host, pid, _ = engine_id.rsplit(":", 2)
    return host, int(pid)


def new_engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
