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
import psycopg2.errors

from flow.clock import utcnow
from flow.decide import HistoryEntry
from flow.errors import WorkflowNotFound
from flow.faults import FaultInjector
from flow.outbox import Outgoing
from flow.persistence.database import is_postgres, translated, unit_of_work, write
from flow.persistence.mapping import (
    ACTIVITY_COLUMNS,
    WORKFLOW_COLUMNS,
    activity_changes,
    activity_from_row,
    activity_state,
    workflow_changes,
    workflow_from_row,
    workflow_state,
)
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
        """A workflow's state, version and partition (two plain statements)."""
        param = self.database.param
        with unit_of_work(self.database):
            self._maybe_fail()
            row = self.database.execute_sql(
                f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = {param}", (workflow_id,)
            ).fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            activities = self.database.execute_sql(
                f"SELECT {ACTIVITY_COLUMNS} FROM activities WHERE workflow_id = {param} ORDER BY position",
                (workflow_id,),
            ).fetchall()
        state, version, partition = workflow_from_row(row, map(activity_from_row, activities))
        return Loaded(state, version, partition)

    def fail_unreadable(self, workflow_id: str, *, epoch: int, owner: str, reason: str) -> bool:
        """Fail a workflow the engine cannot handle (its stored state is unreadable), fenced.

        The database alone must never stop the engine (docs/design.md, invariant 10): such a
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
        if self.postgres:
            with unit_of_work(self.database):
                self._maybe_fail()
                return self._commit_postgres(batch, owner)
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

    def _commit_postgres(self, batch: list[Transition], owner: str) -> BatchResult:
        """The whole batch in one prepared statement (:data:`COMMIT_SQL`): one round trip,
        no planning, and atomic as any single statement is."""
        t = batch
        activities = [(x.workflow_id, a) for x in t for a in x.changed]
        events = [(x.workflow_id, entry, at) for x in t for entry, at in x.history]
        owed = [(x.workflow_id, o) for x in t for o in x.owed]
        deleted = [(x.workflow_id, tid) for x in t for tid in x.timers_deleted]
        timers = [r for x in t for r in x.timers_set]
        params = [
            owner,
            sorted({x.partition for x in t}),
            [x.workflow_id for x in t],
            [x.partition for x in t],
            [x.epoch for x in t],
            [x.version for x in t],
            [x.after.status.value for x in t],
            [x.after.started for x in t],
            [x.after.run for x in t],
            [x.after.run_started_at for x in t],
            [_json(x.after.output) for x in t],
            [x.after.error for x in t],
            [x.after.finished_at for x in t],
            [x.updated_at for x in t],
            [w for w, _ in activities],
            [a.position for _, a in activities],
            [a.status.value for _, a in activities],
            [a.attempt for _, a in activities],
            [a.attempts_before for _, a in activities],
            [_json(a.output) for _, a in activities],
            [a.error for _, a in activities],
            [a.scheduled_at for _, a in activities],
            [a.started_at for _, a in activities],
            [a.finished_at for _, a in activities],
            [w for w, _, _ in events],
            [e.position for _, e, _ in events],
            [e.type for _, e, _ in events],
            [_json(dict(e.data)) for _, e, _ in events],
            [at for _, _, at in events],
            [o.id for _, o in owed],
            [w for w, _ in owed],
            [o.partition for _, o in owed],
            [o.queue_name for _, o in owed],
            [o.actor_name for _, o in owed],
            [_json(o.kwargs) for _, o in owed],
            [o.send_after for _, o in owed],
            [tid for _, tid in deleted],
            [w for w, _ in deleted],
            [r.id for r in timers],
            [r.workflow_id for r in timers],
            [r.partition for r in timers],
            [r.kind for r in timers],
            [r.position for r in timers],
            [r.attempt for r in timers],
            [r.due_at for r in timers],
        ]
        rows = _execute_prepared(self.database, "flow_commit", COMMIT_SQL, COMMIT_TYPES, params)
        updated = {value for kind, value in rows if kind == "w"}
        fenced_ok = {value for kind, value in rows if kind == "f"}
        committed: list[int] = []
        refused: dict[int, str] = {}
        for i, x in enumerate(batch):
            if x.workflow_id in updated:
                committed.append(i)
            elif f"{x.partition}:{x.epoch}" not in fenced_ok:
                refused[i] = "fenced"
            else:
                refused[i] = "version"
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

    # -- the per-row path (SQLite: in process, no round trips to save) -------------------------

    def _update_workflows(self, transitions: list[Transition]) -> set[str]:
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

    def _update_activities(self, transitions: list[Transition]) -> None:
        for t in transitions:
            for a in t.changed:
                ActivityRecord.update(**activity_changes(a)).where(
                    (ActivityRecord.workflow == t.workflow_id) & (ActivityRecord.position == a.position)
                ).execute()

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

    def unstarted(self, partitions: Iterable[int], *, created_before: datetime, limit: int = 500) -> list[str]:
        """Workflows of ``partitions`` created before ``created_before`` whose start was never
        handled (its message was lost): the owner starts them (index ``workflows_unstarted``)."""
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            rows = (
                WorkflowRecord.select(WorkflowRecord.id)
                .where(
                    WorkflowRecord.partition.in_(partitions)
                    & ~WorkflowRecord.started
                    & (WorkflowRecord.created_at < created_before)
                    & (WorkflowRecord.status == WorkflowStatus.IN_PROGRESS.value)
                )
                .limit(limit)
                .tuples()
            )
            return [r[0] for r in rows]

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
        owner is known dead), bumping each one's epoch; return ``partition -> epoch``."""
        if count <= 0:
            return {}
        with write(self.database):
            free = (PartitionLease.owner.is_null()) | (PartitionLease.expires_at < self._now())
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


#: Parameter types of :data:`COMMIT_SQL`, in order: the owner, the partitions, then one
#: array per column of each table written (empty arrays where a batch writes nothing).
COMMIT_TYPES = (
    "text, int[], "
    "text[], int[], bigint[], int[], text[], bool[], int[], timestamp[], text[], text[], timestamp[], timestamp[], "
    "text[], int[], text[], int[], int[], text[], text[], timestamp[], timestamp[], timestamp[], "
    "text[], int[], text[], text[], timestamp[], "
    "text[], text[], int[], text[], text[], text[], timestamp[], "
    "text[], text[], "
    "text[], text[], int[], text[], int[], int[], timestamp[]"
)

#: A group commit as one statement of data-modifying CTEs (docs/design.md, "Group
#: commit"): ``fence`` locks the lease rows we still hold (FOR KEY SHARE: a takeover's
#: FOR UPDATE waits for it, a renewal does not); ``w`` updates the workflows whose
#: partition epoch and version both match and returns their ids; every other write
#: keeps only those workflows' rows; events are inserted in the order given, which
#: their ids (the history's order) follow.
COMMIT_SQL = """
WITH fence AS (
    SELECT partition, epoch FROM partition_leases WHERE owner = $1 AND partition = ANY($2) FOR KEY SHARE
), wv AS (
    SELECT * FROM unnest($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        AS x(id, partition, epoch, version, status, started, run, run_started_at, output, error, finished_at,
             updated_at)
), w AS (
    UPDATE workflows AS t SET status = wv.status, started = wv.started, run = wv.run,
        run_started_at = wv.run_started_at, output = wv.output, error = wv.error, finished_at = wv.finished_at,
        updated_at = wv.updated_at, version = wv.version + 1
    FROM wv JOIN fence ON fence.partition = wv.partition AND fence.epoch = wv.epoch
    WHERE t.id = wv.id AND t.version = wv.version
    RETURNING t.id
), a AS (
    UPDATE activities AS t SET status = av.status, attempt = av.attempt, attempts_before = av.attempts_before,
        output = av.output, error = av.error, scheduled_at = av.scheduled_at, started_at = av.started_at,
        finished_at = av.finished_at
    FROM unnest($15, $16, $17, $18, $19, $20, $21, $22, $23, $24)
        AS av(workflow_id, position, status, attempt, attempts_before, output, error, scheduled_at, started_at,
              finished_at)
    WHERE t.workflow_id = av.workflow_id AND t.position = av.position AND av.workflow_id IN (SELECT id FROM w)
), e AS (
    INSERT INTO events (workflow_id, position, type, data, occurred_at)
    SELECT ev.workflow_id, ev.position, ev.type, ev.data, ev.occurred_at
    FROM unnest($25, $26, $27, $28, $29) WITH ORDINALITY AS ev(workflow_id, position, type, data, occurred_at, n)
    WHERE ev.workflow_id IN (SELECT id FROM w) ORDER BY ev.n
), o AS (
    INSERT INTO outbox (id, workflow, partition, queue_name, actor_name, kwargs, due_at, send_after)
    SELECT ov.id, ov.workflow, ov.partition, ov.queue_name, ov.actor_name, ov.kwargs, ov.send_after, ov.send_after
    FROM unnest($30, $31, $32, $33, $34, $35, $36)
        AS ov(id, workflow, partition, queue_name, actor_name, kwargs, send_after)
    WHERE ov.workflow IN (SELECT id FROM w)
), td AS (
    DELETE FROM timers AS t USING unnest($37, $38) AS d(id, workflow)
    WHERE t.id = d.id AND d.workflow IN (SELECT id FROM w)
), ti AS (
    INSERT INTO timers (id, workflow, partition, kind, position, attempt, due_at)
    SELECT tv.id, tv.workflow, tv.partition, tv.kind, tv.position, tv.attempt, tv.due_at
    FROM unnest($39, $40, $41, $42, $43, $44, $45) AS tv(id, workflow, partition, kind, position, attempt, due_at)
    WHERE tv.workflow IN (SELECT id FROM w)
    ON CONFLICT (id) DO UPDATE SET due_at = EXCLUDED.due_at
)
SELECT 'w', id FROM w UNION ALL SELECT 'f', partition || ':' || epoch FROM fence
"""


def _execute_prepared(database: peewee.Database, name: str, sql: str, types: str, params: list[Any]) -> list[tuple]:
    """EXECUTE a statement prepared once per connection (PREPARE on first use).

    Each parameter is cast to its declared type, so an empty list or a list of NULLs
    (which psycopg2 sends untyped) has the array type the statement expects.
    """
    casts = [t.strip() for t in types.split(",")]
    execute = f"EXECUTE {name} (" + ", ".join(f"%s::{t}" for t in casts) + ")"
    cursor = database.cursor()
    try:
        cursor.execute(execute, params)
    except psycopg2.errors.InvalidSqlStatementName:
        cursor.execute(f"PREPARE {name} ({types}) AS {sql}")
        cursor.execute(execute, params)
    return cursor.fetchall()


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
