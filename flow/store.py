"""Persistence: Peewee models and every query the engine and the API run.

The database is the truth (invariant 1). One event is one transaction:
:meth:`Store.commit` writes the new workflow state, the changed activities and the
history entries together, and refuses with :class:`ConcurrentUpdate` when another
engine committed first (invariant 4, a version column checked on update). Driver
errors leave this module as :class:`StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase
from psycopg2 import extensions as psycopg2_extensions

from flow import faults
from flow.decide import Decision
from flow.definition import Definition
from flow.errors import ConcurrentUpdate, StoreUnavailable, WorkflowNotFound
from flow.outbox import Outgoing
from flow.policy import RetryPolicy, Timeouts
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

logger = logging.getLogger(__name__)

database_proxy = peewee.DatabaseProxy()


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column holds on both backends."""
    return datetime.now(UTC).replace(tzinfo=None)


class JSONText(peewee.TextField):
    """JSON stored as text, identical on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class _Model(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class DefinitionRecord(_Model):
    """Every version of every definition ever registered."""

    name = peewee.CharField(max_length=128)
    version = peewee.IntegerField()
    digest = peewee.CharField(max_length=64)
    body = JSONText()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "definitions"
        indexes = ((("name", "version"), True), (("name", "digest"), True))


class WorkflowRecord(_Model):
    id = peewee.CharField(max_length=36, primary_key=True)
    definition_name = peewee.CharField(max_length=128)
    definition_version = peewee.IntegerField()
    status = peewee.CharField(max_length=16)
    started = peewee.BooleanField(default=False)
    run = peewee.IntegerField(default=1)
    input_data = JSONText()
    config = JSONText()
    output = JSONText(null=True)
    error = peewee.TextField(null=True)
    idempotency_key = peewee.CharField(max_length=255, null=True, unique=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)
    #: Bumped by every committed transition; checked on update (invariant 4).
    version = peewee.IntegerField(default=0)

    class Meta:
        table_name = "workflows"
        indexes = (
            (("created_at", "id"), False),
            (("status", "created_at", "id"), False),
            (("definition_name", "created_at", "id"), False),
        )


class ActivityRecord(_Model):
    workflow = peewee.ForeignKeyField(WorkflowRecord, backref="activity_rows", on_delete="CASCADE")
    position = peewee.IntegerField()
    name = peewee.CharField(max_length=128)
    independent = peewee.BooleanField()
    required = peewee.BooleanField()
    config = JSONText()
    retry = JSONText()
    timeouts = JSONText()
    status = peewee.CharField(max_length=16)
    attempt = peewee.IntegerField(default=0)
    attempts_before = peewee.IntegerField(default=0)
    output = JSONText(null=True)
    error = peewee.TextField(null=True)
    scheduled_at = peewee.DateTimeField(null=True)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "activities"
        indexes = ((("workflow", "position"), True),)


class EventRecord(_Model):
    """The append-only history; ``id`` orders it."""

    id = peewee.BigAutoField()
    workflow = peewee.ForeignKeyField(WorkflowRecord, backref="event_rows", on_delete="CASCADE")
    position = peewee.IntegerField(null=True)
    type = peewee.CharField(max_length=32)
    data = JSONText()
    occurred_at = peewee.DateTimeField()

    class Meta:
        table_name = "events"
        indexes = ((("workflow", "id"), False),)


class OutboxRecord(_Model):
    """A message some committed transition owes (see :mod:`flow.outbox`)."""

    id = peewee.CharField(max_length=32, primary_key=True)
    workflow = peewee.CharField(max_length=36, index=True)
    queue_name = peewee.CharField(max_length=255)
    actor_name = peewee.CharField(max_length=64)
    kwargs = JSONText()
    due_at = peewee.DateTimeField()
    send_after = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "outbox"


MODELS = [DefinitionRecord, WorkflowRecord, ActivityRecord, EventRecord, OutboxRecord]


class PooledPostgres(PooledPostgresqlDatabase):
    """Peewee's PostgreSQL pool without a round trip on every checkout.

    Peewee checks a pooled connection with ``SELECT 1`` each time it is handed out,
    while holding the pool's lock: every unit of work of every thread then waits in
    line behind one network round trip (the engine's throughput capped at a few
    hundred events per second, whatever the thread count). Here only the driver's
    local state is checked; a connection the server dropped fails its next
    statement, the store reports :class:`StoreUnavailable`, the message is retried,
    and psycopg2 has by then marked the connection closed, so the pool discards it.
    """

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        status = conn.get_transaction_status()
        if status == psycopg2_extensions.TRANSACTION_STATUS_UNKNOWN:
            return True
        if status != psycopg2_extensions.TRANSACTION_STATUS_IDLE:
            try:
                conn.rollback()
            except Exception:
                return True
        return False


def open_database(url: str, *, pool_size: int = 16) -> peewee.Database:
    """Build the Peewee database for ``url`` (nothing connects yet).

    PostgreSQL URLs get a connection pool, since every engine event and API request
    is a short unit of work. SQLite gets WAL and a busy timeout, set as pragmas
    because Peewee's URL parser cannot take them.
    """
    scheme = url.split("://", 1)[0]
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        parsed = db_url.parse(url)
        return PooledPostgres(**parsed, max_connections=pool_size, stale_timeout=300, timeout=10)
    if scheme.startswith("sqlite"):
        return db_url.connect(
            url,
            pragmas={"journal_mode": "wal", "busy_timeout": 10_000, "synchronous": "normal", "foreign_keys": 1},
            check_same_thread=False,
        )
    return db_url.connect(url)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn driver failures (and injected ones) into :class:`StoreUnavailable`."""
    try:
        faults.inject("db")
        yield
    except (peewee.OperationalError, peewee.InterfaceError, faults.InjectedFault) as e:
        if "no such table" in str(e):
            raise StoreUnavailable(f"the database has no Libero Flow schema ({e}): run `flow migrate`") from e
        raise StoreUnavailable(f"database unavailable: {e}".strip()) from e
    except peewee.ProgrammingError as e:
        if "does not exist" in str(e):
            raise StoreUnavailable(
                f"the database has no Libero Flow schema ({e.args[0].splitlines()[0]}): run `flow migrate`"
            ) from e
        raise


@dataclass(frozen=True)
class WorkflowRow:
    """A workflow as the API shows it: its state plus bookkeeping columns."""

    state: WorkflowState
    updated_at: datetime
    idempotency_key: str | None


class Store:
    """Every read and write of workflow state, on one Peewee database."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        database_proxy.initialize(database)

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 16) -> Store:
        return cls(open_database(url, pool_size=pool_size))

    def __repr__(self) -> str:
        return f"<Store {type(self.database).__name__} {self.database.database}>"

    # -- schema -----------------------------------------------------------------

    def migrate(self) -> None:
        """Create the tables and indexes that do not exist yet."""
        with _translated(), self.database.connection_context():
            self.database.create_tables(MODELS, safe=True)

    def is_migrated(self) -> bool:
        with _translated(), self.database.connection_context():
            return all(self.database.table_exists(m._meta.table_name) for m in MODELS)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        with _translated(), self.database.connection_context():
            self.database.execute_sql("SELECT 1")

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """Hold one connection for a block (returned to the pool afterwards)."""
        with _translated(), self.database.connection_context():
            yield

    def _write(self) -> Any:
        # SQLite: take the write lock up front; a read-then-write transaction that
        # upgrades later fails with "database is locked" under concurrent writers.
        if isinstance(self.database, peewee.SqliteDatabase):
            return self.database.atomic(lock_type="IMMEDIATE")
        return self.database.atomic()

    # -- definitions ------------------------------------------------------------

    def register_definition(self, definition: Definition) -> tuple[int, bool]:
        """Store ``definition`` as a new version unless that body was registered before;
        return ``(version, created)``."""
        with _translated(), self.database.connection_context():
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
                    with self._write():
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
        with _translated(), self.database.connection_context():
            query = DefinitionRecord.select().where(DefinitionRecord.name == name)
            if version is not None:
                query = query.where(DefinitionRecord.version == version)
            row = query.order_by(DefinitionRecord.version.desc()).first()
            return (row.version, row.body) if row else None

    def list_definitions(self) -> list[dict[str, Any]]:
        """Each definition name with its newest version and when that was registered."""
        with _translated(), self.database.connection_context():
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
        with _translated(), self.database.connection_context():
            rows = DefinitionRecord.select().where(DefinitionRecord.name == name).order_by(DefinitionRecord.version)
            return [{"version": r.version, "created_at": r.created_at, "digest": r.digest} for r in rows]

    # -- workflows --------------------------------------------------------------

    def create_workflow(
        self,
        definition: Definition,
        definition_version: int,
        input_data: Mapping[str, Any],
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        outbox: Any = None,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow and its pending activities; ``(state, created)``.

        ``outbox(workflow_id)`` returns the messages the creation owes (its start),
        stored in the same transaction. With an id or idempotency key that already
        exists, nothing is written and the existing workflow is returned with
        ``created=False``.
        """
        workflow_id = workflow_id or str(uuid.uuid4())
        now = utcnow()
        with _translated(), self.database.connection_context():
            existing = self._find_existing(workflow_id, idempotency_key)
            if existing is not None:
                return self._load(existing), False
            try:
                with self._write():
                    WorkflowRecord.insert(
                        id=workflow_id,
                        definition_name=definition.name,
                        definition_version=definition_version,
                        status=WorkflowStatus.IN_PROGRESS.value,
                        started=False,
                        input_data=dict(input_data),
                        config=dict(definition.config),
                        idempotency_key=idempotency_key,
                        created_at=now,
                        updated_at=now,
                        version=0,
                    ).execute()
                    ActivityRecord.insert_many(
                        [
                            {
                                "workflow": workflow_id,
                                "position": position,
                                "name": spec.name,
                                "independent": spec.independent,
                                "required": spec.required,
                                "config": definition.activity_config(spec),
                                "retry": definition.retry_policy(spec).to_dict(),
                                "timeouts": definition.timeouts(spec).to_dict(),
                                "status": ActivityStatus.PENDING.value,
                                "attempt": 0,
                            }
                            for position, spec in enumerate(definition.activities)
                        ]
                    ).execute()
                    if outbox is not None:
                        self._insert_outbox(workflow_id, outbox(workflow_id))
            except peewee.IntegrityError:
                # Lost a race with a concurrent start carrying the same id or key.
                existing = self._find_existing(workflow_id, idempotency_key)
                if existing is None:
                    raise
                return self._load(existing), False
            return self._load(workflow_id), True

    def _find_existing(self, workflow_id: str, idempotency_key: str | None) -> str | None:
        query = WorkflowRecord.id == workflow_id
        if idempotency_key is not None:
            query |= WorkflowRecord.idempotency_key == idempotency_key
        row = WorkflowRecord.select(WorkflowRecord.id).where(query).first()
        return row.id if row else None

    def load(self, workflow_id: str) -> tuple[WorkflowState, int]:
        """The workflow's state and its version counter."""
        with _translated(), self.database.connection_context():
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            return self._state(row), row.version

    def _load(self, workflow_id: str) -> WorkflowState:
        row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return self._state(row)

    def get(self, workflow_id: str) -> WorkflowRow:
        """The workflow as the API shows it."""
        with _translated(), self.database.connection_context():
            row = WorkflowRecord.get_or_none(WorkflowRecord.id == workflow_id)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            return WorkflowRow(self._state(row), row.updated_at, row.idempotency_key)

    def _state(self, row: WorkflowRecord, *, with_activities: bool = True) -> WorkflowState:
        activities = (
            ()
            if not with_activities
            else tuple(
                ActivityState(
                    position=a.position,
                    name=a.name,
                    independent=a.independent,
                    required=a.required,
                    config=a.config,
                    retry=RetryPolicy(**a.retry),
                    timeouts=Timeouts(**a.timeouts),
                    status=ActivityStatus(a.status),
                    attempt=a.attempt,
                    attempts_before=a.attempts_before,
                    output=a.output,
                    error=a.error,
                    scheduled_at=a.scheduled_at,
                    started_at=a.started_at,
                    finished_at=a.finished_at,
                )
                for a in ActivityRecord.select()
                .where(ActivityRecord.workflow == row.id)
                .order_by(ActivityRecord.position)
            )
        )
        return WorkflowState(
            id=row.id,
            name=row.definition_name,
            definition_version=row.definition_version,
            status=WorkflowStatus(row.status),
            input_data=row.input_data,
            config=row.config,
            activities=activities,
            created_at=row.created_at,
            started=row.started,
            run=row.run,
            output=row.output,
            error=row.error,
            finished_at=row.finished_at,
        )

    def commit(
        self,
        before: WorkflowState,
        version: int,
        decision: Decision,
        *,
        now: datetime,
        outbox: list[Outgoing] | tuple[Outgoing, ...] = (),
    ) -> int:
        """Write one transition and the messages it owes atomically; return the new version.

        Raises :class:`ConcurrentUpdate` when the stored version is no longer
        ``version``: another engine got there first, so reload and decide again.
        """
        after = decision.state
        with _translated(), self.database.connection_context(), self._write():
            updated = (
                WorkflowRecord.update(
                    status=after.status.value,
                    started=after.started,
                    run=after.run,
                    output=after.output,
                    error=after.error,
                    finished_at=after.finished_at,
                    updated_at=now,
                    version=version + 1,
                )
                .where((WorkflowRecord.id == after.id) & (WorkflowRecord.version == version))
                .execute()
            )
            if updated != 1:
                raise ConcurrentUpdate(f"workflow {after.id} changed since version {version}")
            for old, new in zip(before.activities, after.activities, strict=True):
                if old != new:
                    ActivityRecord.update(
                        status=new.status.value,
                        attempt=new.attempt,
                        attempts_before=new.attempts_before,
                        output=new.output,
                        error=new.error,
                        scheduled_at=new.scheduled_at,
                        started_at=new.started_at,
                        finished_at=new.finished_at,
                    ).where((ActivityRecord.workflow == after.id) & (ActivityRecord.position == new.position)).execute()
            if decision.history:
                EventRecord.insert_many(
                    [
                        {
                            "workflow": after.id,
                            "position": entry.position,
                            "type": entry.type,
                            "data": dict(entry.data),
                            "occurred_at": now,
                        }
                        for entry in decision.history
                    ]
                ).execute()
            self._insert_outbox(after.id, outbox)
        return version + 1

    # -- outbox -------------------------------------------------------------------

    def _insert_outbox(self, workflow_id: str, outbox: list[Outgoing] | tuple[Outgoing, ...]) -> None:
        if outbox:
            OutboxRecord.insert_many(
                [
                    {
                        "id": o.id,
                        "workflow": workflow_id,
                        "queue_name": o.queue_name,
                        "actor_name": o.actor_name,
                        "kwargs": o.kwargs,
                        "due_at": o.due_at,
                        "send_after": o.send_after,
                    }
                    for o in outbox
                ]
            ).execute()

    def delete_outbox(self, ids: list[str]) -> None:
        """Forget messages that were published."""
        with _translated(), self.database.connection_context(), self._write():
            for start in range(0, len(ids), 500):
                OutboxRecord.delete().where(OutboxRecord.id.in_(ids[start : start + 500])).execute()

    def claim_outbox(self, *, now: datetime, hold_s: float, limit: int = 500) -> list[Outgoing]:
        """Messages past their ``send_after``, claimed for ``hold_s`` seconds.

        Claiming pushes ``send_after`` forward in the same transaction, and on
        PostgreSQL skips rows another engine holds, so two engines do not both send.
        """
        with _translated(), self.database.connection_context(), self._write():
            query = (
                OutboxRecord.select()
                .where(OutboxRecord.send_after <= now)
                .order_by(OutboxRecord.send_after)
                .limit(limit)
            )
            if not isinstance(self.database, peewee.SqliteDatabase):
                query = query.for_update(skip_locked=True)
            rows = list(query)
            if rows:
                OutboxRecord.update(send_after=now + timedelta(seconds=hold_s)).where(
                    OutboxRecord.id.in_([r.id for r in rows])
                ).execute()
            return [Outgoing(r.queue_name, r.actor_name, r.kwargs, r.due_at, r.send_after, True, r.id) for r in rows]

    def outbox_size(self) -> int:
        with _translated(), self.database.connection_context():
            return OutboxRecord.select().count()

    def in_progress(self) -> list[WorkflowState]:
        """Every unfinished workflow, oldest first (for resuming an embedded run)."""
        with _translated(), self.database.connection_context():
            rows = (
                WorkflowRecord.select()
                .where(WorkflowRecord.status == WorkflowStatus.IN_PROGRESS.value)
                .order_by(WorkflowRecord.created_at)
            )
            return [self._state(row) for row in rows]

    def status_counts(self) -> dict[str, Any]:
        """Workflows and activities by status, and the outbox's size (for metrics)."""
        with _translated(), self.database.connection_context():
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
            return {"workflows": workflows, "activities": activities, "outbox": OutboxRecord.select().count()}

    def events(self, workflow_id: str, *, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """History entries in order, ``after_id`` exclusive."""
        with _translated(), self.database.connection_context():
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
        with _translated(), self.database.connection_context():
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
