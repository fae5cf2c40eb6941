"""Cron schedules in the database: the ``schedules`` and ``schedule_runs`` tables
(migration 0008) and every read and write of them, the API's and the engines'.

A schedule row holds what its user set (the spec) and how far its engine got: every
tick up to ``last_tick_at`` is handled, the next one is ``next_tick_at``. The engine
that holds the schedule's partition advances a row only by compare-and-set on
``version``, which every write bumps: two engines briefly both firing a schedule
(a takeover) or an API write in between make the slower writer read again, so a
tick is never counted twice. Starting a tick's workflow twice is harmless on its own
(its id is derived from the tick, :func:`flow.core.schedules.tick_workflow_id`).

The ``fired`` counter is not part of that compare-and-set: a run row and the count of
it commit in one transaction (:meth:`ScheduleTable.record_run`), the counter growing by
the rows actually inserted. So the counter equals the schedule's run rows whatever
races the pass: a pause committed between a tick's start and the pass's advance, two
engines recording one tick, an engine killed in between.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from flow.core.schedules import Overlap, RunTrigger, ScheduleSpec, TickPlan, next_tick
from flow.core.vocabulary import UNENDED
from flow.persistence.compiled import CompiledSelect
from flow.persistence.database import unit_of_work, write
from flow.persistence.models import JSONText, WorkflowRecord, _Model

#: Runs shown with a schedule.
RECENT_RUNS = 5


class ScheduleRecord(_Model):
    """A schedule: its spec and its progress (see the module docstring)."""

    name = peewee.CharField(max_length=128, primary_key=True)
    #: The namespace that made it (migration 0024).
    namespace = peewee.CharField(max_length=63, default="default")
    #: ``partition_of(name)``: the engine holding this partition fires the schedule.
    partition = peewee.IntegerField()
    workflow = peewee.CharField(max_length=128)
    input_data = JSONText()
    cron = peewee.CharField(max_length=255)
    timezone = peewee.CharField(max_length=64)
    overlap = peewee.CharField(max_length=16)
    catch_up_s = peewee.IntegerField()
    paused = peewee.BooleanField(default=False)
    #: The priority of the workflows it starts (migration 0015).
    priority = peewee.SmallIntegerField(default=3)
    #: The search attributes of the workflows it starts (JSON; migration 0021); NULL: none.
    attributes = JSONText(null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    #: Every tick up to this one is handled (started, skipped or buffered).
    last_tick_at = peewee.DateTimeField()
    next_tick_at = peewee.DateTimeField(null=True)
    #: A tick waiting for the running workflow to end (``buffer_one``).
    buffered_tick_at = peewee.DateTimeField(null=True)
    #: The latest tick (or manual trigger) that started a workflow, and that workflow.
    last_fired_at = peewee.DateTimeField(null=True)
    last_workflow_id = peewee.CharField(max_length=36, null=True)
    fired = peewee.BigIntegerField(default=0)
    skipped = peewee.BigIntegerField(default=0)
    last_skipped_at = peewee.DateTimeField(null=True)
    #: Why the latest start failed (cleared by the next one that works).
    last_error = peewee.TextField(null=True)
    #: SHA-256 of the file it was last read from (schedule files), else NULL.
    file_digest = peewee.CharField(max_length=64, null=True)
    #: Bumped by every write; the engine advances a row by compare-and-set on it.
    version = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "schedules"
        indexes = ((("partition", "next_tick_at"), False),)


class ScheduleRunRecord(_Model):
    """A workflow a schedule started: one per tick (the key), or per manual trigger."""

    schedule = peewee.CharField(max_length=128)
    tick_at = peewee.DateTimeField()
    workflow_id = peewee.CharField(max_length=36)
    trigger = peewee.CharField(max_length=16)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "schedule_runs"
        primary_key = peewee.CompositeKey("schedule", "tick_at")


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule row, read."""

    spec: ScheduleSpec
    partition: int
    created_at: datetime
    updated_at: datetime
    last_tick_at: datetime
    next_tick_at: datetime | None
    buffered_tick_at: datetime | None
    last_fired_at: datetime | None
    last_workflow_id: str | None
    fired: int
    skipped: int
    last_skipped_at: datetime | None
    last_error: str | None
    file_digest: str | None
    version: int

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"<StoredSchedule {self.name} {self.spec.cron!r} next={self.next_tick_at}>"


def _stored(row: ScheduleRecord) -> StoredSchedule:
    spec = ScheduleSpec(
        name=row.name,
        workflow=row.workflow,
        cron=row.cron,
        input_data=row.input_data or {},
        timezone=row.timezone,
        overlap=Overlap(row.overlap),
        catch_up_s=row.catch_up_s,
        paused=row.paused,
        priority=row.priority,
        attributes=row.attributes or {},
    )
    return StoredSchedule(
        spec=spec,
        partition=row.partition,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_tick_at=row.last_tick_at,
        next_tick_at=row.next_tick_at,
        buffered_tick_at=row.buffered_tick_at,
        last_fired_at=row.last_fired_at,
        last_workflow_id=row.last_workflow_id,
        fired=row.fired,
        skipped=row.skipped,
        last_skipped_at=row.last_skipped_at,
        last_error=row.last_error,
        file_digest=row.file_digest,
        version=row.version,
    )


def _spec_columns(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "workflow": spec.workflow,
        "input_data": dict(spec.input_data),
        "cron": spec.cron,
        "timezone": spec.timezone,
        "overlap": spec.overlap.value,
        "catch_up_s": spec.catch_up_s,
        "paused": spec.paused,
        "priority": spec.priority,
        "attributes": dict(spec.attributes) or None,
    }


#: The engine's pass, twice a second (flow.engine.schedules): compiled once per shape.
_DUE = CompiledSelect(
    "due schedules",
    lambda held, now: ScheduleRecord.select().where(
        ScheduleRecord.partition.in_(held)
        & ~ScheduleRecord.paused
        & ((ScheduleRecord.next_tick_at <= now) | ScheduleRecord.buffered_tick_at.is_null(False))
    ),
)


class ScheduleTable:
    """Every read and write of schedules, on one Peewee database."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database

    def __repr__(self) -> str:
        return f"<ScheduleTable {type(self.database).__name__}>"

    # -- the API's side ----------------------------------------------------------------------

    def get(self, name: str) -> StoredSchedule | None:
        with unit_of_work(self.database):
            row = ScheduleRecord.get_or_none(ScheduleRecord.name == name)
            return None if row is None else _stored(row)

    def list(
        self, *, after: str | None = None, limit: int | None = None, namespace: str | None = None
    ) -> list[StoredSchedule]:
        """Schedules (of ``namespace``; None: of all) by name: those after ``after`` (keyset
        paging on the primary key), at most ``limit``; every one by default."""
        with unit_of_work(self.database):
            query = ScheduleRecord.select().order_by(ScheduleRecord.name)
            if namespace is not None:
                query = query.where(ScheduleRecord.namespace == namespace)
            if after is not None:
                query = query.where(ScheduleRecord.name > after)
            if limit is not None:
                query = query.limit(limit)
            return [_stored(row) for row in query]

    def put(
        self,
        spec: ScheduleSpec,
        *,
        partition: int,
        now: datetime,
        file_digest: str | None = None,
        namespace: str = "default",
    ) -> tuple[StoredSchedule, bool]:
        """Create or replace a schedule; ``(stored, created)``.

        A new schedule ticks from ``now`` on (nothing before it is caught up). A changed
        cron expression or time zone, or a resumed schedule, ticks from ``now`` too; its
        counts and runs stay. ``file_digest`` records the file it was read from; a
        write without one keeps the one recorded. ``namespace``: a new schedule's (a
        replaced one keeps its own).
        """
        try:
            return self._put(spec, partition=partition, now=now, file_digest=file_digest, namespace=namespace)
        except peewee.IntegrityError:  # created concurrently by another request: replace it
            return self._put(spec, partition=partition, now=now, file_digest=file_digest, namespace=namespace)

    def _put(
        self, spec: ScheduleSpec, *, partition: int, now: datetime, file_digest: str | None, namespace: str
    ) -> tuple[StoredSchedule, bool]:
        with write(self.database):
            row = ScheduleRecord.get_or_none(ScheduleRecord.name == spec.name)
            columns = {**_spec_columns(spec), "updated_at": now}
            if file_digest is not None:
                columns["file_digest"] = file_digest
            if row is None:
                ScheduleRecord.insert(
                    name=spec.name,
                    namespace=namespace,
                    partition=partition,
                    created_at=now,
                    last_tick_at=now,
                    next_tick_at=next_tick(spec, now),
                    version=0,
                    **columns,
                ).execute()
                return _stored(ScheduleRecord.get(ScheduleRecord.name == spec.name)), True
            before = _stored(row)
            if before.spec.ticks_change(spec) or (before.spec.paused and not spec.paused):
                columns.update(last_tick_at=now, next_tick_at=next_tick(spec, now), buffered_tick_at=None)
            ScheduleRecord.update(version=ScheduleRecord.version + 1, **columns).where(
                ScheduleRecord.name == spec.name
            ).execute()
            return _stored(ScheduleRecord.get(ScheduleRecord.name == spec.name)), False

    def delete(self, name: str) -> bool:
        """Delete a schedule and its runs' records (not the workflows); False if there was none."""
        with write(self.database):
            ScheduleRunRecord.delete().where(ScheduleRunRecord.schedule == name).execute()
            deleted: int = ScheduleRecord.delete().where(ScheduleRecord.name == name).execute()
            return deleted > 0

    def recent_runs(
        self, names: Iterable[str], *, limit: int = RECENT_RUNS
    ) -> dict[str, builtins.list[dict[str, Any]]]:
        """The newest ``limit`` runs of each schedule, with their workflows' status (None
        once the workflow was deleted)."""
        found: dict[str, builtins.list[dict[str, Any]]] = {}
        with unit_of_work(self.database):
            for name in names:
                query = (
                    ScheduleRunRecord.select(ScheduleRunRecord, WorkflowRecord.status, WorkflowRecord.finished_at)
                    .join(
                        WorkflowRecord,
                        peewee.JOIN.LEFT_OUTER,
                        on=(WorkflowRecord.id == ScheduleRunRecord.workflow_id),
                    )
                    .where(ScheduleRunRecord.schedule == name)
                    .order_by(ScheduleRunRecord.tick_at.desc())
                    .limit(limit)
                    .dicts()
                )
                found[name] = list(query)
        return found

    def record_run(self, name: str, tick: datetime, workflow_id: str, trigger: RunTrigger, *, now: datetime) -> bool:
        """Record a workflow the schedule started, and count it, in one transaction: it
        becomes the schedule's latest run. A tick recorded already (by another engine, or
        an earlier pass) is neither recorded nor counted again; False then.

        The row's ``version`` is left alone: the counter only grows, so no writer can lose
        it, and an engine's compare-and-set of the progress must not fail for it."""
        with write(self.database):
            return _record_run(name, tick, workflow_id, trigger, now=now)

    def record_trigger(self, name: str, workflow_id: str, *, now: datetime) -> None:
        """A manual trigger started ``workflow_id``: it is the schedule's latest run."""
        with write(self.database):
            _record_run(name, now, workflow_id, RunTrigger.MANUAL, now=now)
            ScheduleRecord.update(last_error=None, version=ScheduleRecord.version + 1).where(
                ScheduleRecord.name == name
            ).execute()

    # -- the engine's side -------------------------------------------------------------------

    def due(self, partitions: Iterable[int], *, now: datetime) -> builtins.list[StoredSchedule]:
        """Schedules of ``partitions`` that are not paused and have a tick due, or a
        buffered tick that may be waiting for its run to end."""
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            return [_stored(row) for row in _DUE.rows(self.database, partitions, now)]

    def in_progress(self, workflow_id: str | None) -> bool:
        """Whether ``workflow_id`` is a workflow still in progress (False once deleted)."""
        if workflow_id is None:
            return False
        with unit_of_work(self.database):
            running: bool = (
                WorkflowRecord.select()
                .where((WorkflowRecord.id == workflow_id) & (WorkflowRecord.status.in_(UNENDED)))
                .exists()
            )
            return running

    def existing(self, workflow_ids: builtins.list[str]) -> set[str]:
        """Which of ``workflow_ids`` exist."""
        if not workflow_ids:
            return set()
        with unit_of_work(self.database):
            query = WorkflowRecord.select(WorkflowRecord.id).where(WorkflowRecord.id.in_(workflow_ids))
            return {row[0] for row in query.tuples()}

    def advance(self, schedule: StoredSchedule, plan: TickPlan, *, error: str | None) -> bool:
        """Record how far a pass got, if the row is still the one it read; False when
        another write came first. The runs it started are recorded and counted already
        (:meth:`record_run`): whether this wins or not, they stay counted, once."""
        columns: dict[str, Any] = {
            "last_tick_at": plan.last_tick_at,
            "next_tick_at": plan.next_tick_at,
            "buffered_tick_at": plan.buffered_tick_at,
            "skipped": ScheduleRecord.skipped + plan.skipped,
            "version": ScheduleRecord.version + 1,
            "last_error": error,
        }
        if plan.last_skipped_at is not None:
            columns["last_skipped_at"] = plan.last_skipped_at
        with write(self.database):
            changed: int = (
                ScheduleRecord.update(**columns)
                .where((ScheduleRecord.name == schedule.name) & (ScheduleRecord.version == schedule.version))
                .execute()
            )
        return changed > 0

    def record_error(self, schedule: StoredSchedule, error: str) -> None:
        """Say why a pass could not start a tick (it is tried again next pass)."""
        with write(self.database):
            ScheduleRecord.update(last_error=error).where(ScheduleRecord.name == schedule.name).execute()


def _record_run(name: str, tick: datetime, workflow_id: str, trigger: RunTrigger, *, now: datetime) -> bool:
    """:meth:`ScheduleTable.record_run`, in the caller's transaction."""
    inserted: int = (
        ScheduleRunRecord.insert(
            schedule=name, tick_at=tick, workflow_id=workflow_id, trigger=trigger.value, created_at=now
        )
        .on_conflict_ignore()
        .as_rowcount()
        .execute()
    )
    if inserted:
        ScheduleRecord.update(
            fired=ScheduleRecord.fired + inserted, last_fired_at=tick, last_workflow_id=workflow_id
        ).where(ScheduleRecord.name == name).execute()
    return inserted > 0


__all__ = ["RECENT_RUNS", "ScheduleRecord", "ScheduleRunRecord", "ScheduleTable", "StoredSchedule"]
