"""Bulk operations in the database: the ``batches`` and ``batch_items`` tables (migration
0019) and every read and write of them, the API's and the engines'.

A batch row holds what was asked, where its engine got (the keyset cursor: every
matching workflow up to ``(cursor_created_at, cursor_id)`` has an item) and its counts.
An item row is one workflow's outcome; it is written *before* the workflow's control is
sent (as ``pending``) and settled after, so that an engine killed in between leaves a
pending item that the next owner sends again — never a workflow skipped, and never one
handled twice (the control carries what makes a second send harmless, see
:mod:`flow.service.batches`). The engine's writes are fenced by the partition's lease
epoch, as every engine commit is: an engine that lost the batch's partition writes
nothing more.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import peewee

from flow.core.batches import BatchOperation, BatchRequest, BatchStatus, Counts, Outcome, Page
from flow.core.workflow_filter import WorkflowFilter, from_json
from flow.persistence import input_filter
from flow.persistence.compiled import CompiledSelect
from flow.persistence.database import is_postgres, time_budget, unit_of_work, write
from flow.persistence.mapping import StoredWorkflow, read_workflows, workflow_columns, workflow_from_row
from flow.persistence.models import JSONText, PartitionLease, WorkflowRecord, _Model
from flow.persistence.queries import filter_conditions

_LIVE = (BatchStatus.RUNNING.value, BatchStatus.CANCELLING.value)


class BatchRecord(_Model):
    """A batch: its request, cursor and counts (see the module docstring)."""

    id = peewee.CharField(max_length=36, primary_key=True)
    #: ``partition_of(id)``: the engine holding this partition drives the batch.
    partition = peewee.IntegerField()
    namespace = peewee.CharField(max_length=63, default="default")  # its filter's (migration 0024)
    operation = peewee.CharField(max_length=16)
    filter = JSONText()
    #: The rerun options, else NULL.
    options = JSONText(null=True)
    status = peewee.CharField(max_length=16)
    matched = peewee.BigIntegerField(default=0)
    done = peewee.BigIntegerField(default=0)
    failed = peewee.BigIntegerField(default=0)
    skipped = peewee.BigIntegerField(default=0)
    #: Every matching workflow up to this key has an item.
    cursor_created_at = peewee.DateTimeField(null=True)
    cursor_id = peewee.CharField(max_length=36, null=True)
    #: The last page was read: no more workflows match.
    exhausted = peewee.BooleanField(default=False)
    created_by = peewee.CharField(max_length=128, null=True)
    #: The request's ``Idempotency-Key`` (migration 0023): unique where set.
    idempotency_key = peewee.CharField(max_length=255, null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "batches"


class BatchItemRecord(_Model):
    """One workflow a batch matched, and what became of it."""

    batch_id = peewee.CharField(max_length=36)
    workflow_id = peewee.CharField(max_length=36)
    outcome = peewee.CharField(max_length=16)
    #: The workflow's run when it was matched: a control for that run only.
    run = peewee.IntegerField()
    reason = peewee.TextField(null=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "batch_items"
        primary_key = peewee.CompositeKey("batch_id", "workflow_id")


@dataclass(frozen=True)
class StoredBatch:
    """A batch row, read."""

    id: str
    partition: int
    operation: BatchOperation
    filter: WorkflowFilter
    rerun: Mapping[str, Any] | None
    status: BatchStatus
    counts: Counts
    cursor: tuple[datetime, str] | None
    exhausted: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def __repr__(self) -> str:
        return f"<StoredBatch {self.id} {self.operation} {self.status} {self.counts}>"


@dataclass(frozen=True)
class Item:
    """One workflow of a batch: its id, its run when matched, its outcome and why."""

    workflow_id: str
    run: int
    outcome: Outcome = Outcome.PENDING
    reason: str | None = None


def _stored(row: BatchRecord) -> StoredBatch:
    cursor = None if row.cursor_id is None else (row.cursor_created_at, row.cursor_id)
    return StoredBatch(
        id=row.id,
        partition=row.partition,
        operation=BatchOperation(row.operation),
        filter=from_json(row.filter),
        rerun=row.options,
        status=BatchStatus(row.status),
        counts=Counts(row.matched, row.done, row.failed, row.skipped),
        cursor=cursor,
        exhausted=row.exhausted,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


#: The engine's pass, five a second (flow.engine.batches): compiled once per shape.
_LIVE_OF = CompiledSelect(
    "live batches",
    lambda held, live: (
        BatchRecord.select()
        .where(BatchRecord.partition.in_(held) & BatchRecord.status.in_(live))
        .order_by(BatchRecord.created_at, BatchRecord.id)
    ),
)


class BatchTable:
    """Every read and write of batches, on one Peewee database."""

    def __init__(self, database: peewee.Database, *, query_timeout_s: float = 5.0) -> None:
        self.database = database
        #: How long reading a page of matching workflows may run (``FLOW_QUERY_TIMEOUT_S``,
        #: the budget of ``GET /workflows``: the client shaped this filter too).
        self.query_timeout_s = query_timeout_s

    def __repr__(self) -> str:
        return f"<BatchTable {type(self.database).__name__}>"

    # -- the API's side ----------------------------------------------------------------------

    def create(
        self,
        request: BatchRequest,
        *,
        batch_id: str,
        partition: int,
        now: datetime,
        idempotency_key: str | None = None,
    ) -> tuple[StoredBatch, bool]:
        """The batch stored, and True; or, when a batch holds ``idempotency_key`` already
        (sent again, or by a request racing this one), that batch and False."""
        if idempotency_key is not None and (earlier := self.by_key(idempotency_key)) is not None:
            return earlier, False
        try:
            self._insert(request, batch_id=batch_id, partition=partition, now=now, idempotency_key=idempotency_key)
        except peewee.IntegrityError:
            raced = None if idempotency_key is None else self.by_key(idempotency_key)
            if raced is None:
                raise
            return raced, False
        found = self.get(batch_id)
        assert found is not None
        return found, True

    def live_count(self) -> int:
        """How many batches are running or cancelling, in every partition."""
        with unit_of_work(self.database):
            return int(BatchRecord.select().where(BatchRecord.status.in_(_LIVE)).count())

    def by_key(self, idempotency_key: str) -> StoredBatch | None:
        with unit_of_work(self.database):
            row = BatchRecord.get_or_none(BatchRecord.idempotency_key == idempotency_key)
            return None if row is None else _stored(row)

    def _insert(
        self, request: BatchRequest, *, batch_id: str, partition: int, now: datetime, idempotency_key: str | None
    ) -> None:
        with write(self.database):
            BatchRecord.insert(
                id=batch_id,
                namespace=request.filter.namespace or "default",
                idempotency_key=idempotency_key,
                partition=partition,
                operation=request.operation.value,
                filter=request.filter.to_json(),
                options=None if request.rerun is None else dict(request.rerun),
                status=BatchStatus.RUNNING.value,
                created_by=request.created_by,
                created_at=now,
                updated_at=now,
            ).execute()

    def get(self, batch_id: str) -> StoredBatch | None:
        with unit_of_work(self.database):
            row = BatchRecord.get_or_none(BatchRecord.id == batch_id)
            return None if row is None else _stored(row)

    def list(
        self,
        *,
        status: BatchStatus | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
        namespace: str | None = None,
    ) -> builtins.list[StoredBatch]:
        """Newest first (of ``namespace``; None: of all); ``before``: the ``(created_at, id)`` keyset cursor."""
        with unit_of_work(self.database):
            query = BatchRecord.select()
            if namespace is not None:
                query = query.where(BatchRecord.namespace == namespace)
            if status is not None:
                query = query.where(BatchRecord.status == status.value)
            if before is not None:
                created_at, batch_id = before
                query = query.where(
                    (BatchRecord.created_at < created_at)
                    | ((BatchRecord.created_at == created_at) & (BatchRecord.id < batch_id))
                )
            query = query.order_by(BatchRecord.created_at.desc(), BatchRecord.id.desc()).limit(limit)
            return [_stored(row) for row in query]

    def cancel(self, batch_id: str, *, now: datetime) -> bool:
        """Ask a running batch to stop; False when it is not running (any more)."""
        with write(self.database):
            return bool(
                BatchRecord.update(status=BatchStatus.CANCELLING.value, updated_at=now)
                .where((BatchRecord.id == batch_id) & (BatchRecord.status == BatchStatus.RUNNING.value))
                .execute()
            )

    def problems(self, batch_id: str, *, limit: int = 10) -> builtins.list[Item]:
        """The first workflows that failed or were skipped, with why."""
        with unit_of_work(self.database):
            rows = (
                BatchItemRecord.select()
                .where(
                    (BatchItemRecord.batch_id == batch_id)
                    & BatchItemRecord.outcome.in_([Outcome.FAILED.value, Outcome.SKIPPED.value])
                )
                .order_by(BatchItemRecord.updated_at, BatchItemRecord.workflow_id)
                .limit(limit)
            )
            return [Item(r.workflow_id, r.run, Outcome(r.outcome), r.reason) for r in rows]

    def items(self, batch_id: str) -> builtins.list[Item]:
        """Every item of a batch (for tests and small batches)."""
        with unit_of_work(self.database):
            rows = BatchItemRecord.select().where(BatchItemRecord.batch_id == batch_id)
            return [Item(r.workflow_id, r.run, Outcome(r.outcome), r.reason) for r in rows]

    # -- the engine's side -------------------------------------------------------------------

    def live(self, partitions: Iterable[int]) -> builtins.list[StoredBatch]:
        """The running and cancelling batches of ``partitions``, oldest first."""
        held = list(partitions)
        if not held:
            return []
        with unit_of_work(self.database):
            return [_stored(row) for row in _LIVE_OF.rows(self.database, held, _LIVE)]

    def page(self, batch: StoredBatch, limit: int) -> tuple[Page, builtins.list[StoredWorkflow]]:
        """The next ``limit`` matching workflows after the cursor, oldest first, without
        activities (what the controls' preconditions read is on the workflow row).
        Past the time budget, a retryable :class:`~flow.errors.FilterTooCostly`: the next
        pass tries again (a batch whose filter never fits is cancelled by its user)."""
        match = batch.filter.before(batch.created_at)
        blame = input_filter.PARAMETER if match.input is not None else None
        with unit_of_work(self.database), time_budget(self.database, self.query_timeout_s, parameter=blame):
            query = WorkflowRecord.select(*workflow_columns()).where(*filter_conditions(self.database, match))
            if batch.cursor is not None:
                created_at, workflow_id = batch.cursor
                query = query.where(
                    (WorkflowRecord.created_at > created_at)
                    | ((WorkflowRecord.created_at == created_at) & (WorkflowRecord.id > workflow_id))
                )
            query = query.order_by(WorkflowRecord.created_at, WorkflowRecord.id).limit(limit)
            rows = read_workflows(self.database, query, with_activities=False)
        found = [workflow_from_row(row, ()) for row, _ in rows]
        return Page(tuple((w.state.created_at, w.state.id) for w in found), limit), found

    def record_page(
        self, batch: StoredBatch, items: builtins.list[Item], page: Page, *, fence: Fence, now: datetime
    ) -> bool:
        """Record a page's items (pending, or skipped with the reason) and move the cursor
        past it, in one fenced transaction; False (nothing written) when the partition is
        no longer ours or the batch no longer running."""
        with write(self.database):
            if not fence.holds(self.database):
                return False
            if self._locked(batch.id).status != BatchStatus.RUNNING.value:  # cancelled meanwhile
                return False
            ids = [i.workflow_id for i in items]
            seen = {
                r.workflow_id
                for r in BatchItemRecord.select(BatchItemRecord.workflow_id).where(
                    (BatchItemRecord.batch_id == batch.id) & BatchItemRecord.workflow_id.in_(ids)
                )
            }
            new = [i for i in items if i.workflow_id not in seen]
            if new:
                BatchItemRecord.insert_many(
                    [
                        {
                            "batch_id": batch.id,
                            "workflow_id": i.workflow_id,
                            "outcome": i.outcome.value,
                            "run": i.run,
                            "reason": i.reason,
                            "updated_at": now,
                        }
                        for i in new
                    ]
                ).execute()
            cursor = page.cursor or batch.cursor
            skipped = sum(1 for i in new if i.outcome is Outcome.SKIPPED)
            BatchRecord.update(
                matched=BatchRecord.matched + len(new),
                skipped=BatchRecord.skipped + skipped,
                cursor_created_at=cursor[0] if cursor else None,
                cursor_id=cursor[1] if cursor else None,
                exhausted=page.last,
                updated_at=now,
            ).where(BatchRecord.id == batch.id).execute()
        return True

    def pending(self, batch_id: str, limit: int) -> builtins.list[Item]:
        """Items recorded but not settled, in workflow id order."""
        with unit_of_work(self.database):
            rows = (
                BatchItemRecord.select(BatchItemRecord.workflow_id, BatchItemRecord.run)
                .where((BatchItemRecord.batch_id == batch_id) & (BatchItemRecord.outcome == Outcome.PENDING.value))
                .order_by(BatchItemRecord.workflow_id)
                .limit(limit)
            )
            return [Item(r.workflow_id, r.run) for r in rows]

    def settle(self, batch: StoredBatch, settled: builtins.list[Item], *, fence: Fence, now: datetime) -> bool:
        """Record what became of pending items, count them, and end the batch when nothing
        is left: finished once the last page was read, cancelled once asked to stop (its
        remaining pending items skipped). Fenced; False when nothing was written."""
        with write(self.database):
            if not fence.holds(self.database):
                return False
            outcomes: dict[str, Outcome] = {}
            for item in settled:
                changed = (
                    BatchItemRecord.update(outcome=item.outcome.value, reason=item.reason, updated_at=now)
                    .where(
                        (BatchItemRecord.batch_id == batch.id)
                        & (BatchItemRecord.workflow_id == item.workflow_id)
                        & (BatchItemRecord.outcome == Outcome.PENDING.value)
                    )
                    .execute()
                )
                if changed:
                    outcomes[item.workflow_id] = item.outcome
            row = self._locked(batch.id)
            status = BatchStatus(row.status)
            stopped = 0
            if status is BatchStatus.CANCELLING:
                stopped = (
                    BatchItemRecord.update(
                        outcome=Outcome.SKIPPED.value, reason="the batch was cancelled", updated_at=now
                    )
                    .where((BatchItemRecord.batch_id == batch.id) & (BatchItemRecord.outcome == Outcome.PENDING.value))
                    .execute()
                )
            counts = Counts(row.matched, row.done, row.failed, row.skipped).settled(outcomes)
            if status is BatchStatus.CANCELLING:
                counts = replace(counts, skipped=counts.skipped + stopped)
            changes: dict[str, Any] = {
                "done": counts.done,
                "failed": counts.failed,
                "skipped": counts.skipped,
                "updated_at": now,
            }
            if status is BatchStatus.CANCELLING:
                changes.update(status=BatchStatus.CANCELLED.value, finished_at=now)
            elif status is BatchStatus.RUNNING and row.exhausted and counts.pending == 0:
                changes.update(status=BatchStatus.FINISHED.value, finished_at=now)
            BatchRecord.update(**changes).where(BatchRecord.id == batch.id).execute()
        return True

    def _locked(self, batch_id: str) -> BatchRecord:
        """The batch row, locked until the commit (PostgreSQL; SQLite's write lock is
        the whole database): a cancel waits for the page or settlement in hand."""
        query = BatchRecord.select().where(BatchRecord.id == batch_id)
        if is_postgres(self.database):
            query = query.for_update()
        row: BatchRecord = query.get()
        return row


@dataclass(frozen=True)
class Fence:
    """This engine's hold on a partition: ``owner`` holds it under ``epoch``."""

    partition: int
    owner: str
    epoch: int

    def holds(self, database: peewee.Database) -> bool:
        """Inside a write transaction: whether the lease is still ours under our epoch
        (on PostgreSQL the lease row is locked until the commit, so a takeover waits)."""
        query = PartitionLease.select(PartitionLease.owner, PartitionLease.epoch).where(
            PartitionLease.partition == self.partition
        )
        if is_postgres(database):
            query = query.for_update("FOR KEY SHARE")
        return any(owner == self.owner and epoch == self.epoch for owner, epoch in query.tuples())


__all__ = ["BatchItemRecord", "BatchRecord", "BatchTable", "Fence", "Item", "StoredBatch"]
