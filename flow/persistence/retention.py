"""Deleting what is no longer wanted: an ended workflow by id (``DELETE /workflows/{id}``),
ended workflows by age, a batch at a time (``flow prune`` and each engine's retention,
docs/design.md "Retention"), and a definition version that no running workflow uses.

A workflow goes with every row that names it: activities, history, timers and owed
messages. A batch is one short transaction of at most :data:`BATCH` workflows, so
that the API's reads and the engines' commits never wait long behind a prune; on
PostgreSQL it skips rows another transaction holds (an engine committing a late
result for one of them) and takes them next time.

Only ended workflows are deleted. An engine may still hold one in an actor's memory
and receive a late message for it: its commit then finds the row gone and the
message is dropped (:meth:`flow.persistence.group_commit.GroupCommit.commit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import peewee

from flow.clock import utcnow
from flow.core.kinds.child import references
from flow.core.vocabulary import UNENDED, WorkflowStatus
from flow.errors import ChildrenInProgress, DefinitionInUse, DefinitionNotFound, WorkflowInProgress, WorkflowNotFound
from flow.persistence import attributes as stored_attributes
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.models import (
    ActivityRecord,
    DefinitionRecord,
    EventRecord,
    OutboxRecord,
    SignalRecord,
    TimerRecord,
    WorkflowRecord,
)

#: Most workflows one pruning transaction deletes (with their activities and history).
BATCH = 500
_IN_PROGRESS = WorkflowStatus.IN_PROGRESS.value
#: A workflow not ended: In Progress, or Compensating (its undos still run).
_UNENDED = UNENDED


class Retention:
    """The starting side's deletes (a part of :class:`flow.persistence.store.Store`)."""

    database: peewee.Database

    def delete_workflow(self, workflow_id: str) -> None:
        """Delete an ended workflow and everything that names it; :class:`WorkflowNotFound`
        or :class:`WorkflowInProgress` otherwise, and :class:`ChildrenInProgress` while
        child workflows of it are in progress (a parent is not deleted under them)."""
        query = WorkflowRecord.select(WorkflowRecord.status, WorkflowRecord.partition).where(
            WorkflowRecord.id == workflow_id
        )
        with write(self.database):
            if is_postgres(self.database):
                query = query.for_update()  # an engine's commit for it waits, then finds it gone
            row = query.tuples().first()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            if row[0] in _UNENDED:
                raise WorkflowInProgress(workflow_id)
            children = [c for (c,) in _running_children(workflow_id).limit(ChildrenInProgress.SHOWN).tuples()]
            if children:
                raise ChildrenInProgress(workflow_id, children)
            _delete(self.database, [workflow_id], row[1])

    def prune(self, partition: int, *, finished_before: datetime, limit: int = BATCH) -> int:
        """One batch of :func:`prune_batch`."""
        return prune_batch(self.database, partition, finished_before=finished_before, limit=limit)

    def count_prunable(self, *, finished_before: datetime, partitions: Iterable[int] | None = None) -> int:
        """How many ended workflows finished before ``finished_before`` (in ``partitions``)."""
        with unit_of_work(self.database):
            query = WorkflowRecord.select().where(_prunable(finished_before))
            if partitions is not None:
                query = query.where(WorkflowRecord.partition.in_(list(partitions)))
            count: int = query.count()
            return count

    def delete_definition_version(self, name: str, version: int) -> None:
        """Delete one version of a definition: :class:`DefinitionNotFound` if there is no
        such version, :class:`DefinitionInUse` if a workflow in progress was started with it.

        Workflows keep a snapshot of their definition (config and activities), so ended
        ones read as before. The row stays as a tombstone, its body emptied: the number
        is never given to another body, and registering the same body again brings the
        version back under its old number.
        """
        with write(self.database):
            found = DefinitionRecord.get_or_none(
                (DefinitionRecord.name == name)
                & (DefinitionRecord.version == version)
                & DefinitionRecord.deleted_at.is_null()
            )
            if found is None:
                raise DefinitionNotFound(f"{name} version {version}", [])
            running = (
                WorkflowRecord.select()
                .where(
                    # Served by the (status, created_at, id) index: only running workflows are read.
                    (WorkflowRecord.status.in_(_UNENDED))
                    & (WorkflowRecord.definition_name == name)
                    & (WorkflowRecord.definition_version == version)
                )
                .count()
            )
            needed_by = _needed_by(name, version)
            if running and not needed_by:
                raise DefinitionInUse(name, version, running)
            if needed_by:
                if running:
                    needed_by = (f"{running} workflow(s) In Progress started with it", *needed_by)
                raise DefinitionInUse(name, version, running, needed_by=needed_by)
            DefinitionRecord.update(deleted_at=utcnow(), body={}).where(DefinitionRecord.id == found.id).execute()


def _needed_by(name: str, version: int) -> tuple[str, ...]:
    """Who still needs ``name`` at ``version`` through a child step: each registered
    definition version whose child step names that version, or names ``name`` without
    a version when no other version would be left; and the workflows in progress
    started with a definition version whose child step may run it (an unversioned one
    ran the newest at its start, which may be this one)."""
    others = (
        DefinitionRecord.select()
        .where(
            (DefinitionRecord.name == name)
            & (DefinitionRecord.version != version)
            & DefinitionRecord.deleted_at.is_null()
        )
        .exists()
    )
    definitions: list[str] = []
    parents: list[tuple[str, int]] = []
    # Definitions are few (a deployment's workflows' versions), and their bodies are read
    # only here: a delete is an operator's rare act.
    rows = DefinitionRecord.select(DefinitionRecord.name, DefinitionRecord.version, DefinitionRecord.body).where(
        DefinitionRecord.deleted_at.is_null()
    )
    for row in rows:
        if row.name == name and row.version == version:
            continue
        steps = [
            (row.body["activities"][index].get("id", str(index)), pinned)
            for index, child, pinned in references(row.body or {})
            if child == name and pinned in (None, version)
        ]
        if steps:
            parents.append((row.name, row.version))
        needed = [step for step, pinned in steps if pinned == version or not others]
        if needed:
            definitions.append(f"{row.name} version {row.version} (step {', '.join(needed)})")
    for parent, parent_version in parents:
        running = (
            WorkflowRecord.select()
            .where(
                (WorkflowRecord.status.in_(_UNENDED))
                & (WorkflowRecord.definition_name == parent)
                & (WorkflowRecord.definition_version == parent_version)
            )
            .count()
        )
        if running:
            definitions.append(f"{parent} version {parent_version} ({running} workflow(s) In Progress)")
    return tuple(definitions)


def prune_batch(database: peewee.Database, partition: int, *, finished_before: datetime, limit: int = BATCH) -> int:
    """Delete up to ``limit`` workflows of ``partition`` that ended before
    ``finished_before``, oldest first, in one transaction; return how many went.

    Served by the index ``workflows_ended (partition, finished_at)`` (migration 0006).
    """
    query = (
        WorkflowRecord.select(WorkflowRecord.id)
        .where((WorkflowRecord.partition == partition) & _prunable(finished_before))
        .order_by(WorkflowRecord.finished_at)
        .limit(limit)
    )
    with write(database):
        if is_postgres(database):
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        ids = [row[0] for row in query.tuples()]
        if ids:
            _delete(database, ids, partition)
    return len(ids)


def _prunable(finished_before: datetime) -> peewee.Expression:
    # A retried workflow's finished_at is cleared; the status test is a second guard. A
    # parent whose children still run waits for a later pass (delete_workflow says why).
    return (
        (WorkflowRecord.finished_at < finished_before)
        & (WorkflowRecord.status.not_in(_UNENDED))
        & ~peewee.fn.EXISTS(_running_children(WorkflowRecord.id))
    )


#: The children of a workflow, in the queries that look for them.
_CHILD = WorkflowRecord.alias("child")


def _running_children(parent_id: str | peewee.Field) -> peewee.Select:
    """The ids of the children in progress of ``parent_id`` (a workflow id, or the
    column of the outer query). Served by the index ``workflows_parent (parent_id,
    created_at, id)``."""
    return _CHILD.select(_CHILD.id).where((_CHILD.parent_id == parent_id) & (_CHILD.status.in_(_UNENDED)))


def _delete(database: peewee.Database, ids: list[str], partition: int) -> None:
    """Delete workflows ``ids`` of ``partition`` and every row that names them (in the
    caller's transaction). Children go first, set by set, rather than by the
    foreign keys' per-row cascade."""
    EventRecord.delete().where(EventRecord.workflow.in_(ids)).execute()
    SignalRecord.delete().where(SignalRecord.workflow.in_(ids)).execute()
    stored_attributes.delete(database, ids)
    ActivityRecord.delete().where(ActivityRecord.workflow.in_(ids)).execute()
    TimerRecord.delete().where(TimerRecord.workflow.in_(ids)).execute()
    # The outbox keeps only the index its engine reads it by (partition, send_after): an
    # index on workflow would cost every commit a write for the sake of this delete.
    OutboxRecord.delete().where((OutboxRecord.partition == partition) & OutboxRecord.workflow.in_(ids)).execute()
    WorkflowRecord.delete().where(WorkflowRecord.id.in_(ids)).execute()
