"""The engine's reads and writes: load a workflow, commit a batch of transitions (fenced),
leases, timers, the outbox, and the page of unfinished workflows recovery reads.

Group commit (docs/design.md, "Group commit"): :meth:`EngineStore.commit_batch`
writes the transitions of many workflow actors in one transaction with one
statement per table. The transaction first locks the lease rows of the partitions
involved (``FOR KEY SHARE`` on PostgreSQL: a renewal, a plain ``UPDATE`` of the
row, does not wait for it; a takeover, which locks the row ``FOR UPDATE``, does),
drops every transition whose partition is no longer ours under the epoch it was
decided under (fencing), then updates the workflows whose stored version is still
the one the actor holds (the version check); only those transitions' activities,
history, outbox rows and timers are written.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee

from flow.clock import utcnow
from flow.decide import HistoryEntry
from flow.errors import WorkflowNotFound
from flow.faults import FaultInjector
from flow.outbox import Outgoing
from flow.persistence.database import is_postgres, translated, unit_of_work, write
from flow.persistence.mapping import activity_changes, activity_state, workflow_changes, workflow_state
from flow.persistence.models import (
    ActivityRecord,
    EngineRecord,
    EventRecord,
    OutboxRecord,
    PartitionLease,
    TimerRecord,
    WorkflowRecord,
)
from flow.state import ActivityState, WorkflowState, WorkflowStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimerRow:
    """A durable timer (see :class:`flow.persistence.models.TimerRecord`)."""

    id: str
    workflow_id: str
    partition: int
    kind: str
    position: int | None
    attempt: int
    due_at: datetime


def timer_id(workflow_id: str, kind: str, position: int | None, attempt: int) -> str:
    """The id of a workflow's timer: the same timer always gets the same id."""
    return f"{workflow_id}:{kind}:{'-' if position is None else position}:{attempt}"


@dataclass(frozen=True)
class Unreadable:
    """A stored workflow whose rows cannot be read as state (written by hand, or by a
    release with other rules): it fails with ``reason`` instead of stopping the engine."""

    workflow_id: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    state: WorkflowState
    version: int
    partition: int


@dataclass
class Transition:
    """What one actor's handling of one or more events changes, ready to commit."""

    workflow_id: str
    partition: int
    #: The partition's epoch the actor's state was loaded under (the fence).
    epoch: int
    #: The stored version the actor's state was loaded (or last committed) at.
    version: int
    after: WorkflowState
    changed: list[ActivityState]
    history: list[tuple[HistoryEntry, datetime]]
    owed: list[Outgoing] = field(default_factory=list)
    timers_set: list[TimerRow] = field(default_factory=list)
    timers_deleted: list[str] = field(default_factory=list)
    updated_at: datetime = field(default_factory=utcnow)
    #: What the engine settles once the outcome is known (the deliveries); not stored.
    deliveries: list[Any] = field(default_factory=list)
    #: Timers whose firing this transition handles (they fire again if it is refused).
    fired_timers: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    #: Indexes (into the batch) of the transitions that were committed.
    committed: list[int]
    #: Index -> why it was refused: ``"fenced"`` (the partition is not ours under its
    #: epoch any more) or ``"version"`` (the workflow changed since the actor loaded it).
    refused: dict[int, str]


class EngineStore:
    """Every read and write an engine process makes, on one Peewee database."""

    def __init__(self, database: peewee.Database, *, faults: FaultInjector | None = None) -> None:
        self.database = database
        self.faults = faults
        self.postgres = is_postgres(database)

    def __repr__(self) -> str:
        return f"<EngineStore {type(self.database).__name__} {self.database.database}>"

    def _maybe_fail(self) -> None:
        if self.faults is not None:
            self.faults.maybe("db")

    # -- one workflow -------------------------------------------------------------------

    def load(self, workflow_id: str) -> Loaded:
        """A workflow's state, version and partition (two queries)."""
        with unit_of_work(self.database):
            self._maybe_fail()
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            activities = (
                ActivityRecord.select().where(ActivityRecord.workflow == workflow_id).order_by(ActivityRecord.position)
            )
            return Loaded(workflow_state(row, map(activity_state, activities)), row.version, row.partition)

    def fail_unreadable(self, workflow_id: str, *, epoch: int, owner: str, reason: str) -> bool:
        """Fail a workflow the engine cannot handle (its stored state is unreadable), fenced.

        The database alone must never stop the engine (invariant 10): such a
        workflow ends ``Failed`` with the reason, the others go on.
        """
        now = utcnow()
        with write(self.database):
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None or not self._fence({row.partition: epoch}, owner):
                return False
            WorkflowRecord.update(
                status=WorkflowStatus.FAILED.value,
                error=reason,
                finished_at=now,
                updated_at=now,
                version=WorkflowRecord.version + 1,
            ).where((WorkflowRecord.id == workflow_id) & (WorkflowRecord.status == "In Progress")).execute()
            EventRecord.insert(
                workflow=workflow_id, position=None, type="workflow-failure", data={"error": reason}, occurred_at=now
            ).execute()
            TimerRecord.delete().where(TimerRecord.workflow == workflow_id).execute()
        return True

    # -- group commit ---------------------------------------------------------------------

    def commit_batch(self, batch: list[Transition], *, owner: str) -> BatchResult:
        """Commit every transition of ``batch`` that passes the fence and the version check."""
        refused: dict[int, str] = {}
        with write(self.database):
            self._maybe_fail()
            epochs: dict[int, int] = {}
            for t in batch:
                epochs.setdefault(t.partition, t.epoch)
            ours = self._fence(epochs, owner, every_epoch=batch)
            candidates = []
            for i, t in enumerate(batch):
                if (t.partition, t.epoch) in ours:
                    candidates.append(i)
                else:
                    refused[i] = "fenced"
            updated = self._update_workflows([batch[i] for i in candidates])
            committed = []
            for i in candidates:
                if batch[i].workflow_id in updated:
                    committed.append(i)
                else:
                    refused[i] = "version"
            accepted = [batch[i] for i in committed]
            self._update_activities(accepted)
            self._insert_history(accepted)
            self._insert_outbox([o for t in accepted for o in t.owed])
            self._write_timers(accepted)
        return BatchResult(committed, refused)

    def _fence(self, epochs: dict[int, int], owner: str, every_epoch: list[Transition] | None = None) -> set:
        """Lock the lease rows of ``epochs``' partitions; return the ``(partition, epoch)``
        pairs that are ours (for ``every_epoch``: each epoch a transition carries)."""
        query = PartitionLease.select(PartitionLease.partition, PartitionLease.owner, PartitionLease.epoch).where(
            PartitionLease.partition.in_(list(epochs))
        )
        if self.postgres:
            query = query.for_update("FOR KEY SHARE")
        held = {p: e for p, o, e in query.tuples() if o == owner}
        if every_epoch is None:
            return {p for p, e in epochs.items() if held.get(p) == e}
        return {(t.partition, t.epoch) for t in every_epoch if held.get(t.partition) == t.epoch}

    def _update_workflows(self, transitions: list[Transition]) -> set[str]:
        if not transitions:
            return set()
        if not self.postgres:
            updated = set()
            for t in transitions:
                count = (
                    WorkflowRecord.update(**workflow_changes(t.after), updated_at=t.updated_at, version=t.version + 1)
                    .where((WorkflowRecord.id == t.workflow_id) & (WorkflowRecord.version == t.version))
                    .execute()
                )
                if count == 1:
                    updated.add(t.workflow_id)
            return updated
        # One statement for the whole batch: UPDATE ... FROM (VALUES ...) RETURNING.
        rows = []
        for t in transitions:
            c = workflow_changes(t.after)
            rows.append(
                (
                    t.workflow_id,
                    t.version,
                    c["status"],
                    c["started"],
                    c["run"],
                    c["run_started_at"],
                    _json(c["output"]),
                    c["error"],
                    c["finished_at"],
                    t.updated_at,
                )
            )
        sql = (
            "UPDATE workflows AS w SET status = v.status, started = v.started, run = v.run, "
            "run_started_at = v.run_started_at::timestamp, output = v.output, error = v.error, "
            "finished_at = v.finished_at::timestamp, updated_at = v.updated_at::timestamp, version = v.version + 1 "
            "FROM (VALUES {values}) AS v(id, version, status, started, run, run_started_at, output, error, "
            "finished_at, updated_at) WHERE w.id = v.id AND w.version = v.version RETURNING w.id"
        )
        cursor = self.database.execute_sql(
            *_values(sql, rows, "(%s, %s::int, %s, %s::bool, %s::int, %s, %s, %s, %s, %s)")
        )
        return {r[0] for r in cursor.fetchall()}

    def _update_activities(self, transitions: list[Transition]) -> None:
        changes = [(t.workflow_id, a) for t in transitions for a in t.changed]
        if not changes:
            return
        if not self.postgres:
            for workflow_id, a in changes:
                ActivityRecord.update(**activity_changes(a)).where(
                    (ActivityRecord.workflow == workflow_id) & (ActivityRecord.position == a.position)
                ).execute()
            return
        rows = []
        for workflow_id, a in changes:
            c = activity_changes(a)
            rows.append(
                (
                    workflow_id,
                    a.position,
                    c["status"],
                    c["attempt"],
                    c["attempts_before"],
                    _json(c["output"]),
                    c["error"],
                    c["scheduled_at"],
                    c["started_at"],
                    c["finished_at"],
                )
            )
        sql = (
            "UPDATE activities AS a SET status = v.status, attempt = v.attempt, attempts_before = v.attempts_before, "
            "output = v.output, error = v.error, scheduled_at = v.scheduled_at::timestamp, "
            "started_at = v.started_at::timestamp, finished_at = v.finished_at::timestamp "
            "FROM (VALUES {values}) AS v(workflow_id, position, status, attempt, attempts_before, output, error, "
            "scheduled_at, started_at, finished_at) WHERE a.workflow_id = v.workflow_id AND a.position = v.position"
        )
        self.database.execute_sql(*_values(sql, rows, "(%s, %s::int, %s, %s::int, %s::int, %s, %s, %s, %s, %s)"))

    def _insert_history(self, transitions: list[Transition]) -> None:
        rows = [
            {
                "workflow": t.workflow_id,
                "position": entry.position,
                "type": entry.type,
                "data": dict(entry.data),
                "occurred_at": occurred_at,
            }
            for t in transitions
            for entry, occurred_at in t.history
        ]
        for chunk in _chunks(rows, 1000):
            EventRecord.insert_many(chunk).execute()

    def _insert_outbox(self, owed: list[Outgoing]) -> None:
        rows = [
            {
                "id": o.id,
                "workflow": o.workflow_id or "",
                "partition": o.partition,
                "queue_name": o.queue_name,
                "actor_name": o.actor_name,
                "kwargs": o.kwargs,
                "due_at": o.send_after,
                "send_after": o.send_after,
            }
            for o in owed
        ]
        for chunk in _chunks(rows, 1000):
            OutboxRecord.insert_many(chunk).execute()

    def _write_timers(self, transitions: list[Transition]) -> None:
        deleted = [i for t in transitions for i in t.timers_deleted]
        for chunk in _chunks(deleted, 1000):
            TimerRecord.delete().where(TimerRecord.id.in_(chunk)).execute()
        rows = [_timer_fields(r) for t in transitions for r in t.timers_set]
        for chunk in _chunks(rows, 1000):
            # The same timer set again (a recovery, a redelivered event) keeps one row.
            TimerRecord.insert_many(chunk).on_conflict(
                conflict_target=[TimerRecord.id], preserve=[TimerRecord.due_at]
            ).execute()

    # -- timers -------------------------------------------------------------------------------

    def timers_due(self, partitions: Iterable[int], *, before: datetime, limit: int = 10_000) -> list[TimerRow]:
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            query = (
                TimerRecord.select()
                .where(TimerRecord.partition.in_(partitions) & (TimerRecord.due_at <= before))
                .order_by(TimerRecord.due_at)
                .limit(limit)
            )
            return [TimerRow(r.id, r.workflow, r.partition, r.kind, r.position, r.attempt, r.due_at) for r in query]

    def upsert_timers(self, rows: list[TimerRow]) -> None:
        """Set timers (recovery): an existing timer keeps its row."""
        with write(self.database):
            for chunk in _chunks(rows, 500):
                TimerRecord.insert_many([_timer_fields(r) for r in chunk]).on_conflict_ignore().execute()

    # -- the outbox -----------------------------------------------------------------------------

    def delete_outbox(self, ids: list[str]) -> None:
        """Forget messages that were published."""
        with write(self.database):
            for chunk in _chunks(ids, 500):
                OutboxRecord.delete().where(OutboxRecord.id.in_(chunk)).execute()

    def claim_outbox(
        self, partitions: Iterable[int], *, now: datetime, hold_s: float, every: bool = False, limit: int = 500
    ) -> list[Outgoing]:
        """Owed messages of ``partitions`` past their ``send_after`` (``every``: all of them),
        held for ``hold_s`` so the next pass does not send them again meanwhile."""
        partitions = list(partitions)
        if not partitions:
            return []
        with write(self.database):
            query = OutboxRecord.select().where(OutboxRecord.partition.in_(partitions))
            if not every:
                query = query.where(OutboxRecord.send_after <= now)
            rows = list(query.order_by(OutboxRecord.send_after).limit(limit))
            if rows:
                OutboxRecord.update(send_after=now + timedelta(seconds=hold_s)).where(
                    OutboxRecord.id.in_([r.id for r in rows])
                ).execute()
            return [Outgoing(r.queue_name, r.actor_name, r.kwargs, r.partition, r.send_after, r.id) for r in rows]

    def outbox_by_id(self, ids: list[str]) -> list[Outgoing]:
        with unit_of_work(self.database):
            rows = []
            for chunk in _chunks(ids, 500):
                rows += list(OutboxRecord.select().where(OutboxRecord.id.in_(chunk)))
            return [Outgoing(r.queue_name, r.actor_name, r.kwargs, r.partition, r.send_after, r.id) for r in rows]

    def delete_timers(self, ids: list[str]) -> None:
        with write(self.database):
            for chunk in _chunks(ids, 500):
                TimerRecord.delete().where(TimerRecord.id.in_(chunk)).execute()

    def delete_partition_outbox(self, partition: int) -> int:
        with write(self.database):
            return OutboxRecord.delete().where(OutboxRecord.partition == partition).execute()

    # -- recovery ------------------------------------------------------------------------------

    def unfinished(self, partition: int, *, page: int = 200) -> Iterator[WorkflowState | Unreadable]:
        """Every unfinished workflow of ``partition``, a page of ``page`` at a time (an
        :class:`Unreadable` for one whose rows cannot be read as state)."""
        after = ""
        while True:
            with unit_of_work(self.database):
                rows = list(
                    WorkflowRecord.select()
                    .where(
                        (WorkflowRecord.partition == partition)
                        & (WorkflowRecord.status == WorkflowStatus.IN_PROGRESS.value)
                        & (WorkflowRecord.id > after)
                    )
                    .order_by(WorkflowRecord.id)
                    .limit(page)
                )
                by_workflow: dict[str, list[Any]] = {r.id: [] for r in rows}
                if rows:
                    for a in (
                        ActivityRecord.select()
                        .where(ActivityRecord.workflow.in_(list(by_workflow)))
                        .order_by(ActivityRecord.workflow, ActivityRecord.position)
                    ):
                        by_workflow[a.workflow_id].append(a)
            for r in rows:
                try:
                    yield workflow_state(r, map(activity_state, by_workflow[r.id]))
                except Exception as e:  # noqa: BLE001 - one bad row must not stop the others
                    yield Unreadable(r.id, f"{type(e).__name__}: {e}")
            if len(rows) < page:
                return
            after = rows[-1].id

    # -- leases --------------------------------------------------------------------------------

    def heartbeat(self, engine_id: str, *, partitions_held: int, refused_commits: int, started_at: datetime) -> None:
        now = utcnow()
        with write(self.database):
            updated = (
                EngineRecord.update(heartbeat_at=now, partitions_held=partitions_held, refused_commits=refused_commits)
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
                    heartbeat_at=now,
                    partitions_held=partitions_held,
                    refused_commits=refused_commits,
                ).execute()

    def live_engines(self, *, within_s: float) -> list[str]:
        """Engines that heartbeated within ``within_s``, by id; long-dead ones are forgotten."""
        now = utcnow()
        with write(self.database):
            EngineRecord.delete().where(EngineRecord.heartbeat_at < now - timedelta(seconds=within_s * 20)).execute()
            rows = EngineRecord.select(EngineRecord.id).where(
                EngineRecord.heartbeat_at >= now - timedelta(seconds=within_s)
            )
            return sorted(r.id for r in rows)

    def forget_engine(self, engine_id: str) -> None:
        with write(self.database):
            EngineRecord.delete().where(EngineRecord.id == engine_id).execute()

    def renew(self, engine_id: str, held: dict[int, int], *, lease_s: float) -> dict[int, int]:
        """Extend the leases of ``held`` that are still ours under their epoch; return those."""
        if not held:
            return {}
        now = utcnow()
        with write(self.database):
            rows = list(
                PartitionLease.select(PartitionLease.partition, PartitionLease.epoch)
                .where((PartitionLease.partition.in_(list(held))) & (PartitionLease.owner == engine_id))
                .tuples()
            )
            still = {p: e for p, e in rows if held.get(p) == e}
            if still:
                PartitionLease.update(expires_at=now + timedelta(seconds=lease_s)).where(
                    PartitionLease.partition.in_(list(still)) & (PartitionLease.owner == engine_id)
                ).execute()
            return still

    def acquire(self, engine_id: str, count: int, *, lease_s: float, dead_owners: set[str]) -> dict[int, int]:
        """Take up to ``count`` partitions that nobody holds (or whose lease expired, or whose
        owner is known dead), bumping each one's epoch; return ``partition -> epoch``."""
        if count <= 0:
            return {}
        now = utcnow()
        with write(self.database):
            free = (PartitionLease.owner.is_null()) | (PartitionLease.expires_at < now)
            if dead_owners:
                free |= PartitionLease.owner.in_(list(dead_owners))
            query = (
                PartitionLease.select(PartitionLease.partition)
                .where(free & ((PartitionLease.owner.is_null()) | (PartitionLease.owner != engine_id)))
                .order_by(PartitionLease.partition)
                .limit(count)
            )
            if self.postgres:
                query = query.for_update("FOR UPDATE SKIP LOCKED")
            partitions = [r.partition for r in query]
            if not partitions:
                return {}
            PartitionLease.update(
                owner=engine_id, epoch=PartitionLease.epoch + 1, expires_at=now + timedelta(seconds=lease_s)
            ).where(PartitionLease.partition.in_(partitions)).execute()
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


def _timer_fields(row: TimerRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "workflow": row.workflow_id,
        "partition": row.partition,
        "kind": row.kind,
        "position": row.position,
        "attempt": row.attempt,
        "due_at": row.due_at,
    }


def engine_host_pid(engine_id: str) -> tuple[str, int]:
    """``host:pid:nonce`` -> ``(host, pid)``."""
    host, pid, _ = engine_id.rsplit(":", 2)
    return host, int(pid)


def new_engine_id() -> str:
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _json(value: Any) -> str | None:
    import json

    return None if value is None else json.dumps(value, separators=(",", ":"))


def _values(sql: str, rows: list[tuple], row_sql: str) -> tuple[str, list[Any]]:
    params: list[Any] = []
    for row in rows:
        params.extend(row)
    return sql.replace("{values}", ", ".join([row_sql] * len(rows))), params


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "BatchResult",
    "EngineStore",
    "Loaded",
    "TimerRow",
    "Transition",
    "engine_host_pid",
    "new_engine_id",
    "timer_id",
    "translated",
]
