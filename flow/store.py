"""What the starting side and the API read and write: definitions, new workflows, views.

The engine's own reads and writes (loading a workflow, group commits, leases,
timers) are in :mod:`flow.persistence.engine_store`; the tables in
:mod:`flow.persistence.models`. Driver errors leave as :class:`StoreUnavailable`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from flow.clock import utcnow
from flow.definition import Definition
from flow.errors import IdempotencyConflict, StoreUnavailable, WorkflowNotFound
from flow.persistence import schema
from flow.persistence.database import is_postgres, open_database, unit_of_work, write
from flow.persistence.mapping import activity_state, workflow_state
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
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

logger = logging.getLogger(__name__)

__all__ = ["Store", "WorkflowRow", "utcnow", "OutboxRecord"]


@dataclass(frozen=True)
class WorkflowRow:
    """A workflow as the API shows it: its state plus bookkeeping columns."""

    state: WorkflowState
    updated_at: datetime
    idempotency_key: str | None


class Store:
    """Reads and writes of the API and the starting side, on one Peewee database."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 16) -> Store:
        return cls(open_database(url, pool_size=pool_size))

    def __repr__(self) -> str:
        return f"<Store {type(self.database).__name__} {self.database.database}>"

    # -- schema -----------------------------------------------------------------

    def migrate(self, *, partitions: int | None = None) -> list[str]:
        """Apply every pending migration; fix (or check) the partition count."""
        return schema.upgrade(self.database, partitions=partitions)

    def is_migrated(self) -> bool:
        """Every migration applied and the partition count fixed."""
        return not schema.pending(self.database) and self.partitions() is not None

    def partitions(self) -> int | None:
        """The partition count fixed in this database (None before ``flow migrate``)."""
        return schema.stored_partitions(self.database)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        with unit_of_work(self.database):
            self.database.execute_sql("SELECT 1")

    def unit_of_work(self) -> Any:
        """Hold one connection for a block (returned to the pool afterwards)."""
        return unit_of_work(self.database)

    # -- definitions ------------------------------------------------------------

    def register_definition(self, definition: Definition) -> tuple[int, bool]:
        """Store ``definition`` as a new version unless that body was registered before;
        return ``(version, created)``."""
        with unit_of_work(self.database):
            for _ in range(5):
                existing = DefinitionRecord.get_or_none(
                    (DefinitionRecord.name == definition.name) & (DefinitionRecord.digest == definition.digest)
                )
                if existing is not None:
                    return existing.version, False
                latest = (
                    DefinitionRecord.select(peewee.fn.MAX(DefinitionRecord.version))
                    .where(DefinitionRecord.name == definition.name)
                    .scalar()
                    or 0
                )
                try:
                    with write(self.database):
                        DefinitionRecord.create(
                            name=definition.name,
                            version=latest + 1,
                            digest=definition.digest,
                            body=definition.body,
                            created_at=utcnow(),
                        )
                    return latest + 1, True
                except peewee.IntegrityError:
                    continue  # another process registered concurrently: read again
            raise StoreUnavailable(f"could not register definition {definition.name}: too much contention")

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
        sql = f"SELECT version FROM definitions WHERE name = {param}"
        params: tuple[Any, ...] = (name,)
        if version is not None:
            sql += f" AND version = {param}"
            params += (version,)
        with unit_of_work(self.database):
            row = self.database.execute_sql(sql + " ORDER BY version DESC LIMIT 1", params).fetchone()
        return row[0] if row else None

    def list_definitions(self) -> list[dict[str, Any]]:
        """Each definition name with its newest version and when that was registered."""
        with unit_of_work(self.database):
            latest = (
                DefinitionRecord.select(DefinitionRecord.name, peewee.fn.MAX(DefinitionRecord.version).alias("v"))
                .group_by(DefinitionRecord.name)
                .alias("latest")
            )
            rows = (
                DefinitionRecord.select(DefinitionRecord)
                .join(latest, on=(DefinitionRecord.name == latest.c.name) & (DefinitionRecord.version == latest.c.v))
                .order_by(DefinitionRecord.name)
            )
            return [{"name": r.name, "version": r.version, "created_at": r.created_at, "body": r.body} for r in rows]

    def definition_versions(self, name: str) -> list[dict[str, Any]]:
        with unit_of_work(self.database):
            rows = DefinitionRecord.select().where(DefinitionRecord.name == name).order_by(DefinitionRecord.version)
            return [{"version": r.version, "created_at": r.created_at, "digest": r.digest} for r in rows]

    # -- creating workflows -------------------------------------------------------

    def create_workflow(
        self,
        definition: Definition,
        definition_version: int,
        input_data: Mapping[str, Any],
        *,
        partition_of: Callable[[str], int],
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow and its pending activities; ``(state, created)``.

        With an id or idempotency key that already exists, nothing is written and the
        existing workflow is returned with ``created=False`` — unless it was started
        with another definition or input, which raises :class:`IdempotencyConflict`.
        The unique indexes make that hold under concurrent starts.
        """
        workflow_id = workflow_id or str(uuid.uuid4())
        now = utcnow()
        state = WorkflowState(
            id=workflow_id,
            name=definition.name,
            definition_version=definition_version,
            status=WorkflowStatus.IN_PROGRESS,
            input_data=dict(input_data),
            config=dict(definition.config),
            activities=tuple(
                ActivityState(
                    position=position,
                    name=spec.name,
                    independent=spec.independent,
                    required=spec.required,
                    config=definition.activity_config(spec),
                    retry=definition.retry_policy(spec),
                    timeouts=definition.timeouts(spec),
                )
                for position, spec in enumerate(definition.activities)
            ),
            created_at=now,
        )
        workflow = {
            "id": workflow_id,
            "definition_name": definition.name,
            "definition_version": definition_version,
            "partition": partition_of(workflow_id),
            "status": WorkflowStatus.IN_PROGRESS.value,
            "started": False,
            "run": 1,
            "input_data": json.dumps(state.input_data, separators=(",", ":")),
            "config": json.dumps(state.config, separators=(",", ":")),
            "idempotency_key": idempotency_key,
            "created_at": now,
            "updated_at": now,
            "version": 0,
        }
        activities = [
            (
                a.position,
                a.name,
                a.independent,
                a.required,
                json.dumps(a.config, separators=(",", ":")),
                json.dumps(a.retry.to_dict(), separators=(",", ":")),
                json.dumps(a.timeouts.to_dict(), separators=(",", ":")),
            )
            for a in state.activities
        ]
        with unit_of_work(self.database):
            created = (
                self._insert_postgres(workflow, activities)
                if is_postgres(self.database)
                else self._insert(workflow, activities)
            )
            if created:
                return state, True
            existing = self._find_existing(workflow_id, idempotency_key, definition.name, input_data)
            if existing is None:  # pragma: no cover - a conflict on a row that then vanished
                raise StoreUnavailable(f"workflow {workflow_id} could not be created; try again")
            return existing, False

    def _insert_postgres(self, workflow: dict[str, Any], activities: list[tuple]) -> bool:
        """The workflow and its activities in one statement (one round trip); False when
        its id or idempotency key exists already."""
        columns = ", ".join(workflow)
        placeholders = ", ".join(["%s"] * len(workflow))
        sql = (
            f"WITH w AS (INSERT INTO workflows ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING "
            "RETURNING id), "
            "a AS (INSERT INTO activities (workflow_id, position, name, independent, required, config, retry, "
            "timeouts, status, attempt, attempts_before) "
            "SELECT w.id, a.position, a.name, a.independent, a.required, a.config, a.retry, a.timeouts, "
            "'Pending', 0, 0 FROM w, unnest(%s::int[], %s::text[], %s::bool[], %s::bool[], %s::text[], %s::text[], "
            "%s::text[]) AS a(position, name, independent, required, config, retry, timeouts)) "
            "SELECT id FROM w"
        )
        params = [*workflow.values(), *(list(column) for column in zip(*activities, strict=True))]
        return self.database.execute_sql(sql, params).fetchone() is not None

    def _insert(self, workflow: dict[str, Any], activities: list[tuple]) -> bool:
        try:
            with write(self.database):
                WorkflowRecord.insert(
                    **{
                        **workflow,
                        "input_data": json.loads(workflow["input_data"]),
                        "config": json.loads(workflow["config"]),
                    }
                ).execute()
                rows = [
                    {
                        "workflow": workflow["id"],
                        "position": position,
                        "name": name,
                        "independent": independent,
                        "required": required,
                        "config": json.loads(config),
                        "retry": json.loads(retry),
                        "timeouts": json.loads(timeouts),
                        "status": ActivityStatus.PENDING.value,
                        "attempt": 0,
                    }
                    for position, name, independent, required, config, retry, timeouts in activities
                ]
                for start in range(0, len(rows), 500):
                    ActivityRecord.insert_many(rows[start : start + 500]).execute()
        except peewee.IntegrityError:
            return False  # the id or the idempotency key exists
        return True

    def _find_existing(
        self, workflow_id: str, idempotency_key: str | None, name: str, input_data: Mapping[str, Any]
    ) -> WorkflowState | None:
        """The workflow an earlier start with this id or key created, if it was the same request."""
        query = WorkflowRecord.id == workflow_id
        if idempotency_key is not None:
            query |= WorkflowRecord.idempotency_key == idempotency_key
        row = WorkflowRecord.select().where(query).first()
        if row is None:
            return None
        if row.definition_name != name or row.input_data != dict(input_data):
            what = f"idempotency key {idempotency_key!r}" if row.idempotency_key == idempotency_key else "workflow id"
            raise IdempotencyConflict(
                f"the {what} was used for workflow {row.id} ({row.definition_name}) with "
                + ("another definition" if row.definition_name != name else "another input")
                + "; a repeated start must send the same name and input_data, or use a new key"
            )
        return self._state(row)

    def delete_outbox(self, ids: list[str]) -> None:
        """Forget messages that were published."""
        with write(self.database):
            for start in range(0, len(ids), 500):
                OutboxRecord.delete().where(OutboxRecord.id.in_(ids[start : start + 500])).execute()

    def outbox_size(self) -> int:
        with unit_of_work(self.database):
            return OutboxRecord.select().count()

    # -- reading workflows -----------------------------------------------------------

    def _load(self, workflow_id: str) -> WorkflowState:
        row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return self._state(row)

    def get(self, workflow_id: str) -> WorkflowRow:
        """The workflow as the API shows it."""
        with unit_of_work(self.database):
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            return WorkflowRow(self._state(row), row.updated_at, row.idempotency_key)

    def _state(self, row: WorkflowRecord, *, with_activities: bool = True) -> WorkflowState:
        activities = ()
        if with_activities:
            activities = tuple(
                activity_state(a)
                for a in ActivityRecord.select()
                .where(ActivityRecord.workflow == row.id)
                .order_by(ActivityRecord.position)
            )
        return workflow_state(row, activities)

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

    def list_workflows(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[WorkflowRow]:
        """Newest first, without activities; ``before`` is the ``(created_at, id)`` keyset cursor."""
        with unit_of_work(self.database):
            query = WorkflowRecord.select()
            if status:
                query = query.where(WorkflowRecord.status == status)
            if name:
                query = query.where(WorkflowRecord.definition_name == name)
            if created_after:
                query = query.where(WorkflowRecord.created_at >= created_after)
            if created_before:
                query = query.where(WorkflowRecord.created_at < created_before)
            if before:
                created_at, workflow_id = before
                query = query.where(
                    (WorkflowRecord.created_at < created_at)
                    | ((WorkflowRecord.created_at == created_at) & (WorkflowRecord.id < workflow_id))
                )
            rows = query.order_by(WorkflowRecord.created_at.desc(), WorkflowRecord.id.desc()).limit(limit)
            return [WorkflowRow(self._state(r, with_activities=False), r.updated_at, r.idempotency_key) for r in rows]
