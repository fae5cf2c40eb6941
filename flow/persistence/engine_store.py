"""The engine's reads and writes, but for the group commit (:mod:`flow.persistence.group_commit`)
and the leases (:mod:`flow.persistence.leases`): load a workflow, fail one it cannot
handle, its timers, its outbox, the workflows a partition must start or resume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import peewee

from flow.clock import utcnow
from flow.core.state import WorkflowState, WorkflowStatus
from flow.core.vocabulary import UNENDED, ActivityStatus, HistoryType
from flow.errors import WorkflowNotFound
from flow.faults import FaultInjector
from flow.persistence.compiled import CompiledSelect
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.group_commit import GroupCommit
from flow.persistence.leases import LeaseTable
from flow.persistence.mapping import (
    ACTIVITY_COLUMNS,
    SIGNAL_COLUMNS,
    WORKFLOW_COLUMNS,
    activity_from_row,
    read_workflows,
    signal_from_row,
    workflow_columns,
    workflow_from_row,
)
from flow.persistence.models import EventRecord, OutboxRecord, TimerRecord, WorkflowRecord
from flow.persistence.records import BatchResult, Loaded, TimerRow, Transition, Unreadable, chunks, timer_fields
from flow.persistence.retention import BATCH, prune_batch
from flow.wire.outgoing import Outgoing

logger = logging.getLogger(__name__)


#: The outbox's and the unstarted sweep's passes, every second (flow.engine.outbox): compiled once per shape.
_OWED = CompiledSelect(
    "owed outbox messages",
    lambda held, now, limit: (
        OutboxRecord.select()
        .where(OutboxRecord.partition.in_(held) & (OutboxRecord.send_after <= now))
        .order_by(OutboxRecord.send_after)
        .limit(limit)
    ),
)
_UNSTARTED = CompiledSelect(
    "unstarted workflows",
    lambda held, before, status, limit: (
        WorkflowRecord.select(WorkflowRecord.id)
        .where(
            WorkflowRecord.partition.in_(held)
            & ~WorkflowRecord.started
            & (WorkflowRecord.created_at < before)
            & (WorkflowRecord.status == status)
        )
        .limit(limit)
        .tuples()
    ),
)


class EngineStore:
    """Every read and write an engine process makes, on one Peewee database."""

    def __init__(
        self, database: peewee.Database, *, faults: FaultInjector | None = None, history_warn: int = 10_000
    ) -> None:
        self.database = database
        self.faults = faults
        self.postgres = is_postgres(database)
        self.group_commit = GroupCommit(database, before=self._maybe_fail, history_warn=history_warn)
        self.leases = LeaseTable(database)

    def commit_batch(self, batch: list[Transition], *, owner: str) -> BatchResult:
        """Commit every transition of ``batch`` that passes the fence and the version check."""
        return self.group_commit.commit(batch, owner=owner)

    def __repr__(self) -> str:
        return f"<EngineStore {type(self.database).__name__} {self.database.database}>"

    def _maybe_fail(self) -> None:
        if self.faults is not None:
            self.faults.maybe("db")

    # -- one workflow -------------------------------------------------------------------

    def load(self, workflow_id: str) -> Loaded:
        """A workflow's state, version and partition (three plain statements: the row, its
        activities, its inbox)."""
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
            inbox = self.database.execute_sql(
                f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE workflow_id = {param} ORDER BY n", (workflow_id,)
            ).fetchall()
        stored = workflow_from_row(row, map(activity_from_row, activities), map(signal_from_row, inbox))
        return Loaded(stored.state, stored.version, stored.partition)

    def fail_unreadable(self, workflow_id: str, *, epoch: int, owner: str, reason: str) -> bool:
        """Fail a workflow the engine cannot handle (its stored state is unreadable), fenced.

        The database alone must never stop the engine (docs/design.md, invariant 10): such a
        workflow ends ``Failed`` with the reason, the others go on.
        """
        now = utcnow()
        with write(self.database):
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None or not self.group_commit.held({row.partition: epoch}, owner):
                return False
            WorkflowRecord.update(
                status=WorkflowStatus.FAILED.value,
                error=reason,
                finished_at=now,
                updated_at=now,
                version=WorkflowRecord.version + 1,
                history_length=WorkflowRecord.history_length + 1,
            ).where((WorkflowRecord.id == workflow_id) & (WorkflowRecord.status.in_(UNENDED))).execute()
            EventRecord.insert(
                workflow=workflow_id,
                position=None,
                type=HistoryType.WORKFLOW_FAILURE.value,
                data={"error": reason},
                occurred_at=now,
            ).execute()
            TimerRecord.delete().where(TimerRecord.workflow == workflow_id).execute()
        return True

    # -- group commit ---------------------------------------------------------------------

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
            for chunk in chunks(rows, 500):
                TimerRecord.insert_many([timer_fields(r) for r in chunk]).on_conflict_ignore().execute()

    # -- the outbox -----------------------------------------------------------------------------

    def delete_outbox(self, ids: list[str]) -> None:
        """Forget messages that were published. A plain statement: every step's message is
        deleted here, and Peewee compiled the ``IN`` of a 500-id chunk value by value."""
        p = self.database.param
        with write(self.database):
            for chunk in chunks(ids, 500):
                self.database.execute_sql(f"DELETE FROM outbox WHERE id IN ({', '.join([p] * len(chunk))})", chunk)

    def claim_outbox(
        self, partitions: Iterable[int], *, now: datetime, hold_s: float, every: bool = False, limit: int = 500
    ) -> list[Outgoing]:
        """Owed messages of ``partitions`` past their ``send_after`` (``every``: all of them),
        held for ``hold_s`` so the next pass does not send them again meanwhile."""
        partitions = list(partitions)
        if not partitions:
            return []
        with write(self.database):
            if every:
                query = OutboxRecord.select().where(OutboxRecord.partition.in_(partitions))
                rows = list(query.order_by(OutboxRecord.send_after).limit(limit))
            else:
                rows = _OWED.rows(self.database, partitions, now, limit)
            if rows:
                OutboxRecord.update(send_after=now + timedelta(seconds=hold_s)).where(
                    OutboxRecord.id.in_([r.id for r in rows])
                ).execute()
            return [
                Outgoing(r.queue_name, r.actor_name, r.kwargs, r.partition, r.send_after, r.id, r.priority)
                for r in rows
            ]

    def outbox_by_id(self, ids: list[str]) -> list[Outgoing]:
        with unit_of_work(self.database):
            rows = []
            for chunk in chunks(ids, 500):
                rows += list(OutboxRecord.select().where(OutboxRecord.id.in_(chunk)))
            return [
                Outgoing(r.queue_name, r.actor_name, r.kwargs, r.partition, r.send_after, r.id, r.priority)
                for r in rows
            ]

    def unstarted(self, partitions: Iterable[int], *, created_before: datetime, limit: int = 500) -> list[str]:
        """Workflows of ``partitions`` created before ``created_before`` whose start was never
        handled (its message was lost): the owner starts them (index ``workflows_unstarted``)."""
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            rows = _UNSTARTED.rows(self.database, partitions, created_before, WorkflowStatus.IN_PROGRESS.value, limit)
            return [r[0] for r in rows]

    def delete_timers(self, ids: list[str]) -> None:
        with write(self.database):
            for chunk in chunks(ids, 500):
                TimerRecord.delete().where(TimerRecord.id.in_(chunk)).execute()

    def prune(self, partition: int, *, finished_before: datetime, limit: int = BATCH) -> int:
        """Delete a batch of ``partition``'s workflows that ended before ``finished_before``
        (retention, :func:`flow.persistence.retention.prune_batch`); return how many."""
        return prune_batch(self.database, partition, finished_before=finished_before, limit=limit)

    def delete_partition_outbox(self, partition: int) -> int:
        with write(self.database):
            deleted: int = OutboxRecord.delete().where(OutboxRecord.partition == partition).execute()
            return deleted

    # -- recovery ------------------------------------------------------------------------------

    def lost_attempts(self, partition: int) -> list[tuple[str, int, int]]:
        """``(workflow_id, position, attempt)`` of the attempts still in flight of the
        *ended* workflows of ``partition``: a cancel or a failure told them to stop, and
        only their result ends them (with the slot of a concurrency limit they hold)."""
        with unit_of_work(self.database):
            p = self.database.param
            rows = self.database.execute_sql(
                "SELECT a.workflow_id, a.position, a.attempt FROM activities a "
                "JOIN workflows w ON w.id = a.workflow_id "
                f"WHERE w.partition = {p} AND w.status NOT IN ({p}, {p}) AND a.status IN ({p}, {p})",
                (
                    partition,
                    *UNENDED,
                    ActivityStatus.SCHEDULED.value,
                    ActivityStatus.STARTED.value,
                ),
            ).fetchall()
        return [(w, position, attempt) for w, position, attempt in rows]

    def unfinished(self, partition: int, *, page: int = 200) -> Iterator[WorkflowState | Unreadable]:
        """Every unfinished workflow of ``partition``, a page of ``page`` at a time (an
        :class:`Unreadable` for one whose rows cannot be read as state)."""
        after = ""
        while True:
            with unit_of_work(self.database):
                query = (
                    WorkflowRecord.select(*workflow_columns())
                    .where(
                        (WorkflowRecord.partition == partition)
                        & (WorkflowRecord.status.in_(UNENDED))
                        & (WorkflowRecord.id > after)
                    )
                    .order_by(WorkflowRecord.id)
                    .limit(page)
                )
                rows = read_workflows(self.database, query)
            for row, activities in rows:
                try:
                    yield workflow_from_row(row, map(activity_from_row, activities)).state
                except Exception as e:  # noqa: BLE001 - one bad row must not stop the others
                    yield Unreadable(row[0], f"{type(e).__name__}: {e}")
            if len(rows) < page:
                return
            after = rows[-1][0][0]

    # -- leases --------------------------------------------------------------------------------
