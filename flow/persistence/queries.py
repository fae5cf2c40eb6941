"""What the API reads: workflows, their history, definitions, the counts behind /metrics.

Workflows are read raw and mapped by :mod:`flow.persistence.mapping`, as the engine
reads them. Driver errors leave as :class:`~flow.errors.StoreUnavailable`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import peewee

from flow.clock import utcnow
from flow.core.workflow_filter import WorkflowFilter
from flow.errors import WorkflowNotFound
from flow.persistence import attributes as stored_attributes
from flow.persistence import input_filter as filters
from flow.persistence.database import time_budget, unit_of_work
from flow.persistence.mapping import (
    StoredWorkflow,
    activity_from_row,
    read_workflows,
    workflow_columns,
    workflow_from_row,
)
from flow.persistence.models import (
    ActivityRecord,
    DefinitionRecord,
    EngineRecord,
    EventRecord,
    OutboxRecord,
    PartitionLease,
    TimerRecord,
    WorkflowRecord,
)


def filter_conditions(database: peewee.Database, match: WorkflowFilter) -> list[Any]:
    """The conditions on ``workflows`` of a filter (always at least one: TRUE), for
    ``GET /workflows`` and the batches alike."""
    conditions: list[Any] = [peewee.SQL("1 = 1")]
    if match.namespace is not None:
        conditions.append(WorkflowRecord.namespace == match.namespace)
    if match.status:
        conditions.append(WorkflowRecord.status == match.status)
    if match.name:
        conditions.append(WorkflowRecord.definition_name == match.name)
    if match.parent_id:
        conditions.append(WorkflowRecord.parent_id == match.parent_id)
    if match.priority is not None:
        # No index of its own: five values split no table finely, and a page is
        # read newest first by the (created_at, id) index, filtered as it goes.
        conditions.append(WorkflowRecord.priority == match.priority)
    if match.input is not None:
        conditions.append(filters.input_contains(database, match.input))
    for condition in match.attributes:
        conditions.append(stored_attributes.condition(database, condition, WorkflowRecord.id))
    if match.created_after:
        conditions.append(WorkflowRecord.created_at >= match.created_after)
    if match.created_before:
        conditions.append(WorkflowRecord.created_at < match.created_before)
    return conditions


class Queries:
    """The API's reads (a part of :class:`flow.persistence.store.Store`)."""

    database: peewee.Database
    #: How long a listing a client shapes may run (``FLOW_QUERY_TIMEOUT_S``).
    query_timeout_s: float

    # -- workflows ------------------------------------------------------------------------

    def get(self, workflow_id: str, *, namespace: str | None = None) -> StoredWorkflow:
        """A workflow with its activities, or :class:`WorkflowNotFound`; ``namespace``: only
        that namespace's (another's is not found, as the API's namespace check answers,
        read on the row this loads anyway rather than by a query of its own)."""
        where = WorkflowRecord.id == workflow_id
        if namespace is not None:
            where &= WorkflowRecord.namespace == namespace
        with unit_of_work(self.database):
            found = self._find(where)
            if found is None:
                raise WorkflowNotFound(workflow_id)
            return replace(found, attributes=stored_attributes.read(self.database, workflow_id))

    def inbox_of(self, workflow_id: str, signal_id: str) -> tuple[int, int, bool, str | None]:
        """What a new signal is checked against: the bytes the workflow's kept signals
        hold, how many signals it has (taken ones included), whether a signal
        ``signal_id`` came already, and its payload's digest (None when unknown). Reads
        sizes, keys and one row, never a payload."""
        param = self.database.param
        with unit_of_work(self.database):
            (kept,) = self.database.execute_sql(
                f"SELECT coalesce(sum(size), 0) FROM signals WHERE workflow_id = {param} AND consumed_by IS NULL",
                (workflow_id,),
            ).fetchone()
            (count,) = self.database.execute_sql(
                f"SELECT count(*) FROM signals WHERE workflow_id = {param}", (workflow_id,)
            ).fetchone()
            earlier = self.database.execute_sql(
                f"SELECT digest FROM signals WHERE workflow_id = {param} AND signal_id = {param}",
                (workflow_id, signal_id),
            ).fetchone()
        return int(kept), int(count), earlier is not None, earlier[0] if earlier is not None else None

    def _find(self, where: Any) -> StoredWorkflow | None:
        """The first workflow matching ``where``, with its activities (inside a unit of work)."""
        rows = read_workflows(self.database, WorkflowRecord.select(*workflow_columns()).where(where).limit(1))
        if not rows:
            return None
        row, activities = rows[0]
        return workflow_from_row(row, map(activity_from_row, activities))

    def list_workflows(
        self,
        match: WorkflowFilter | None = None,
        *,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
        input_filter: Mapping[str, Any] | None = None,
        **criteria: Any,
    ) -> list[StoredWorkflow]:
        """Newest first, without activities; ``before`` is the ``(created_at, id)`` keyset
        cursor; ``match`` (or its fields as keywords, ``input_filter`` for ``input``): the
        filter (:mod:`flow.core.workflow_filter`).

        Within the time budget (:func:`time_budget`): past it, :class:`FilterTooCostly`
        naming the ``input`` filter when there is one (the only part whose cost the
        client decides: the others are served by indexes)."""
        if match is None:
            match = WorkflowFilter(input=input_filter, **criteria)
        if match.input is not None:
            filters.check(match.input)  # before a connection is taken
        blame = filters.PARAMETER if match.input is not None else None
        with unit_of_work(self.database), time_budget(self.database, self.query_timeout_s, parameter=blame):
            query = WorkflowRecord.select(*workflow_columns()).where(*filter_conditions(self.database, match))
            if before:
                created_at, workflow_id = before
                query = query.where(
                    (WorkflowRecord.created_at < created_at)
                    | ((WorkflowRecord.created_at == created_at) & (WorkflowRecord.id < workflow_id))
                )
            query = query.order_by(WorkflowRecord.created_at.desc(), WorkflowRecord.id.desc()).limit(limit)
            return [
                workflow_from_row(row, ()) for row, _ in read_workflows(self.database, query, with_activities=False)
            ]

    def events(self, workflow_id: str, *, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """History entries in order, ``after_id`` exclusive."""
        with unit_of_work(self.database):
            if not WorkflowRecord.select().where(WorkflowRecord.id == workflow_id).exists():
                raise WorkflowNotFound(workflow_id)
            rows = (
                EventRecord.select()
                .where((EventRecord.workflow == workflow_id) & (EventRecord.id > after_id))
                .order_by(EventRecord.id)
                .limit(limit)
            )
            return [
                {
                    "id": r.id,
                    "type": r.type,
                    "position": r.position,
                    "data": r.data,
                    "occurred_at": r.occurred_at,
                }
                for r in rows
            ]

    # -- definitions ---------------------------------------------------------------------------

    def definition(self, name: str, version: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """``(version, body)`` of ``name`` at ``version`` (default: the newest), or None."""
        found = self.definition_version(name, version)
        if found is None:
            return None
        with unit_of_work(self.database):
            row = self.database.execute_sql(
                f"SELECT body FROM definitions WHERE name = {self.database.param} AND version = {self.database.param}",
                (name, found),
            ).fetchone()
        return (found, json.loads(row[0])) if row else None

    def definition_version(self, name: str, version: int | None = None) -> int | None:
        """The newest version of ``name`` (or ``version`` if it exists), or None: a start
        needs only this when the body of that version is parsed and cached already."""
        param = self.database.param
        sql = f"SELECT version FROM definitions WHERE name = {param} AND deleted_at IS NULL"
        params: tuple[Any, ...] = (name,)
        if version is not None:
            sql += f" AND version = {param}"
            params += (version,)
        with unit_of_work(self.database):
            row = self.database.execute_sql(sql + " ORDER BY version DESC LIMIT 1", params).fetchone()
        return row[0] if row else None

    def list_definitions(self, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Each definition name (of ``namespace``; None: of every one) with its newest
        version and when that was registered."""
        where = DefinitionRecord.deleted_at.is_null()
        if namespace is not None:
            where &= DefinitionRecord.namespace == namespace
        with unit_of_work(self.database):
            latest = (
                DefinitionRecord.select(DefinitionRecord.name, peewee.fn.MAX(DefinitionRecord.version).alias("v"))
                .where(where)
                .group_by(DefinitionRecord.name)
                .alias("latest")
            )
            rows = (
                DefinitionRecord.select(DefinitionRecord)
                .join(latest, on=(DefinitionRecord.name == latest.c.name) & (DefinitionRecord.version == latest.c.v))
                .order_by(DefinitionRecord.name)
            )
            return [{"name": r.name, "version": r.version, "created_at": r.created_at, "body": r.body} for r in rows]

    def newest_definitions(self) -> list[tuple[str, int]]:
        """Each registered definition's name and newest version (an event's triggers are
        theirs)."""
        with unit_of_work(self.database):
            query = (
                DefinitionRecord.select(DefinitionRecord.name, peewee.fn.MAX(DefinitionRecord.version))
                .where(DefinitionRecord.deleted_at.is_null())
                .group_by(DefinitionRecord.name)
                .order_by(DefinitionRecord.name)
            )
            return [(name, version) for name, version in query.tuples()]

    def definition_versions(self, name: str) -> list[dict[str, Any]]:
        with unit_of_work(self.database):
            rows = (
                DefinitionRecord.select()
                .where((DefinitionRecord.name == name) & DefinitionRecord.deleted_at.is_null())
                .order_by(DefinitionRecord.version)
            )
            return [{"version": r.version, "created_at": r.created_at, "digest": r.digest} for r in rows]

    # -- counts -----------------------------------------------------------------------------------

    def status_counts(self) -> dict[str, Any]:
        """Workflows and activities by status, the outbox's and timers' sizes, and who
        holds the partitions (for metrics)."""
        with unit_of_work(self.database):
            workflows = dict(
                WorkflowRecord.select(WorkflowRecord.status, peewee.fn.COUNT(WorkflowRecord.id))
                .group_by(WorkflowRecord.status)
                .tuples()
            )
            activities = dict(
                ActivityRecord.select(ActivityRecord.status, peewee.fn.COUNT(ActivityRecord.id))
                .group_by(ActivityRecord.status)
                .tuples()
            )
            live = EngineRecord.heartbeat_at > utcnow() - timedelta(minutes=1)
            engines = [
                {"id": e.id, "partitions": e.partitions_held, "refused_commits": e.refused_commits}
                for e in EngineRecord.select().where(live)
            ]
            unowned = (
                PartitionLease.select()
                .where(PartitionLease.owner.is_null() | (PartitionLease.expires_at < utcnow()))
                .count()
            )
            return {
                "workflows": workflows,
                "activities": activities,
                "outbox": OutboxRecord.select().count(),
                "timers": TimerRecord.select().count(),
                "engines": engines,
                "unowned_partitions": unowned,
            }

    def unstarted_count(self, at_most: int) -> int:
        """Workflows created whose start no engine has handled yet, counted up to
        ``at_most`` (the API's start backlog, :mod:`flow.service.intake`): a walk of the
        partial index ``workflows_unstarted`` that stops there, whatever the backlog."""
        with unit_of_work(self.database):
            unstarted = WorkflowRecord.select(WorkflowRecord.id).where(~WorkflowRecord.started).limit(at_most)
            count: int = WorkflowRecord.select(peewee.fn.COUNT(peewee.SQL("*"))).from_(unstarted.alias("u")).scalar()
            return count

    def outbox_size(self) -> int:
        with unit_of_work(self.database):
            count: int = OutboxRecord.select().count()
            return count
