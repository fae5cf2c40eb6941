"""Peewee models: the tables of the current schema.

Models are bound through :data:`database_proxy`, which an entry point points at a
database with :func:`bind` (never a constructor: building two stores in one
process must not silently re-point every model). The schema itself is created and
changed only by the numbered migrations in :mod:`flow.persistence.migrations`.
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from flow.clock import utcnow
from flow.core.strict_json import JSON

database_proxy = peewee.DatabaseProxy()


def bind(database: peewee.Database) -> None:
    """Point every model at ``database`` (once per process, in its entry point)."""
    database_proxy.initialize(database)


class JSONText(peewee.TextField):
    """JSON stored as text, identical on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> JSON:
        return None if value is None else json.loads(value)


class _Model(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class MetaRecord(_Model):
    """Settings fixed when the database was created (``partitions``)."""

    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "flow_meta"


class DefinitionRecord(_Model):
    """Every version of every definition ever registered."""

    name = peewee.CharField(max_length=128)
    version = peewee.IntegerField()
    #: The namespace that owns the name (every version of a name has the same; migration 0024).
    namespace = peewee.CharField(max_length=63, default="default")
    digest = peewee.CharField(max_length=64)
    body = JSONText()
    created_at = peewee.DateTimeField(default=utcnow)
    #: Set when the version was deleted: the row stays as a tombstone (its body emptied)
    #: so that the number is never given to another body (migration 0006).
    deleted_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "definitions"
        indexes = ((("name", "version"), True), (("name", "digest"), True))


class WorkflowRecord(_Model):
    id = peewee.CharField(max_length=36, primary_key=True)
    definition_name = peewee.CharField(max_length=128)
    definition_version = peewee.IntegerField()
    #: Its definition's namespace (migration 0024).
    namespace = peewee.CharField(max_length=63, default="default")
    #: ``partition_of(id)``: which engine's lease covers this workflow.
    partition = peewee.IntegerField(default=0)
    status = peewee.CharField(max_length=16)
    started = peewee.BooleanField(default=False)
    run = peewee.IntegerField(default=1)
    #: When the current run started (the workflow timeout counts from it).
    run_started_at = peewee.DateTimeField(null=True)
    input_data = JSONText()
    config = JSONText()
    output = JSONText(null=True)
    error = peewee.TextField(null=True)
    idempotency_key = peewee.CharField(max_length=255, null=True, unique=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField(null=True)
    #: Bumped by every committed transition; checked on update, besides the
    #: partition's epoch (docs/design.md, "Fencing").
    version = peewee.IntegerField(default=0)
    #: The W3C traceparent of the workflow's span (flow.observability.tracing); NULL while tracing is off.
    traceparent = peewee.CharField(max_length=255, null=True)
    #: Paused: nothing new is scheduled until it resumes.
    paused = peewee.BooleanField(default=False)
    #: A child workflow's parent, the parent's activity and attempt that created it; NULL
    #: for a workflow that is nobody's child (flow.core.lineage.ParentLink).
    parent_id = peewee.CharField(max_length=36, null=True)
    parent_position = peewee.IntegerField(null=True)
    parent_attempt = peewee.IntegerField(null=True)
    #: 1 (first) to 5 (last), from the start request (migration 0015).
    priority = peewee.SmallIntegerField(default=3)
    #: Its claim on the definition's workflow concurrency limit, and whether its run waits
    #: for a slot (migration 0016, flow.core.workflow_limit).
    limit_name = peewee.CharField(max_length=300, null=True)
    limit_key = peewee.CharField(max_length=255, null=True)
    limit_max = peewee.IntegerField(null=True)
    limit_strategy = peewee.CharField(max_length=32, null=True)
    queued = peewee.BooleanField(default=False)
    #: Entries of its history, added to by each commit that appends some (migration 0022):
    #: past ``FLOW_HISTORY_WARN`` the API warns and the engine logs once.
    history_length = peewee.IntegerField(default=0)

    class Meta:
        table_name = "workflows"
        indexes = (
            (("created_at", "id"), False),
            (("status", "created_at", "id"), False),
            (("definition_name", "created_at", "id"), False),
            (("partition", "status"), False),
            # and workflows_unstarted (partition, created_at) WHERE NOT started: migration 0003;
            # workflows_ended (partition, finished_at) WHERE finished_at IS NOT NULL, and on
            # PostgreSQL workflows_input, GIN on input_data::jsonb: migration 0006;
            # workflows_parent (parent_id, created_at, id) WHERE parent_id IS NOT NULL: migration 0007
        )


class SignalRecord(_Model):
    """A signal in a workflow's inbox (flow.core.kinds.wait; migration 0013): written
    when it arrives, its payload deleted when a step takes it; the row stays (id and
    digest) so that a repeated send is recognised. ``n``: its place in the inbox."""

    workflow = peewee.ForeignKeyField(WorkflowRecord, on_delete="CASCADE")
    signal_id = peewee.CharField(max_length=255)
    n = peewee.IntegerField()
    name = peewee.CharField(max_length=128)
    received_at = peewee.DateTimeField()
    #: The payload while the signal is kept; NULL once a step took it.
    payload = JSONText(null=True)
    #: Bytes of the payload's JSON (what a kept signal counts against FLOW_MAX_INBOX_BYTES).
    size = peewee.IntegerField()
    #: SHA-256 of the payload's canonical JSON; NULL for one taken before migration 0013.
    digest = peewee.CharField(max_length=64, null=True)
    consumed_by = peewee.IntegerField(null=True)
    position = peewee.IntegerField(null=True)
    run = peewee.IntegerField(null=True)

    class Meta:
        table_name = "signals"
        primary_key = peewee.CompositeKey("workflow", "signal_id")
        # and signals_kept (workflow_id, consumed_by, size) WHERE consumed_by IS NULL: migration 0013


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
    #: ``{"id", "depends_on" (positions), "trigger", "when"}`` where they differ from
    #: the first release's meaning (id = name, positional rule); null when none does.
    graph = JSONText(null=True)
    skip_reason = peewee.TextField(null=True)
    #: ``{"details", "at"}`` of the last heartbeat (migration 0011); null when none came.
    heartbeat = JSONText(null=True)
    #: Its claim on a concurrency limit (migration 0014, :mod:`flow.core.limits`): the
    #: limit's name, the key's value, the definition's number, the workflow's priority.
    limit_name = peewee.CharField(max_length=300, null=True)
    limit_key = peewee.CharField(max_length=255, null=True)
    limit_max = peewee.IntegerField(null=True)
    priority = peewee.SmallIntegerField(null=True)
    #: A rate limit's claim: the definition's rate and burst, and that it is a rate limit.
    rate_per_s = peewee.DoubleField(null=True)
    rate_burst = peewee.IntegerField(null=True)
    limit_rate = peewee.BooleanField(null=True)

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
    """A message some committed transition owes (see :mod:`flow.engine.outbox`)."""

    id = peewee.CharField(max_length=32, primary_key=True)
    workflow = peewee.CharField(max_length=36)
    partition = peewee.IntegerField(default=0)
    queue_name = peewee.CharField(max_length=255)
    actor_name = peewee.CharField(max_length=64)
    kwargs = JSONText()
    due_at = peewee.DateTimeField()
    send_after = peewee.DateTimeField()
    #: An attempt's workflow priority, 1 (first) to 5, sent as RabbitMQ's (migration 0026).
    priority = peewee.SmallIntegerField(null=True)

    class Meta:
        table_name = "outbox"
        indexes = ((("partition", "send_after"), False),)


class LimitRecord(_Model):
    """A named concurrency limit's number, set at run time (``PUT /limits/{name}``); the
    admitting transaction locks the row of the limit it admits for (migration 0014)."""

    name = peewee.CharField(max_length=300, primary_key=True)
    #: The namespace that set it (migration 0024).
    namespace = peewee.CharField(max_length=63, default="default")
    #: How many of its slots may be held at once, per key; null: the definitions' number.
    max_running = peewee.IntegerField(null=True)
    #: A rate limit's starts per second and burst, per key; null: the definitions'.
    per_s = peewee.DoubleField(null=True)
    burst = peewee.IntegerField(null=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "limits"


class LimitRateRecord(_Model):
    """A rate limit's state for one key: its GCRA's theoretical arrival time (migration 0014)."""

    name = peewee.CharField(max_length=300)
    key = peewee.CharField(max_length=255)
    tat = peewee.DateTimeField()

    class Meta:
        table_name = "limit_rates"
        primary_key = peewee.CompositeKey("name", "key")


class NamespaceRateRecord(_Model):
    """A namespace's starts-per-second quota, shared by every process: its GCRA's
    theoretical arrival time, seconds since the Unix epoch (migration 0027)."""

    namespace = peewee.CharField(max_length=63, primary_key=True)
    tat = peewee.DoubleField()

    class Meta:
        table_name = "namespace_rates"


class TimerRecord(_Model):
    """A durable timer: the owner of ``partition`` fires it at ``due_at``.

    Its id is derived from what it is for (workflow, kind, activity, attempt), so
    setting the same timer twice is one row, and a transition can delete it by name.
    """

    id = peewee.CharField(max_length=128, primary_key=True)
    workflow = peewee.CharField(max_length=36)
    partition = peewee.IntegerField()
    kind = peewee.CharField(max_length=32)
    position = peewee.IntegerField(null=True)
    attempt = peewee.IntegerField()
    due_at = peewee.DateTimeField()

    class Meta:
        table_name = "timers"
        indexes = ((("partition", "due_at"), False), (("workflow",), False))


class PartitionLease(_Model):
    """Who owns a partition, under which epoch, until when (docs/design.md, "Partitions")."""

    partition = peewee.IntegerField(primary_key=True)
    owner = peewee.CharField(max_length=128, null=True)
    #: Bumped at every acquisition; every commit checks it (fencing).
    epoch = peewee.BigIntegerField(default=0)
    expires_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "partition_leases"


class EngineRecord(_Model):
    """A live engine process: its heartbeat makes it count when partitions are shared out."""

    id = peewee.CharField(max_length=128, primary_key=True)
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    started_at = peewee.DateTimeField()
    heartbeat_at = peewee.DateTimeField(index=True)
    partitions_held = peewee.IntegerField(default=0)
    #: Commits this engine's transitions lost to fencing or to the version check.
    refused_commits = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "engines"


MODELS = [
    MetaRecord,
    DefinitionRecord,
    WorkflowRecord,
    ActivityRecord,
    EventRecord,
    OutboxRecord,
    TimerRecord,
    PartitionLease,
    EngineRecord,
    LimitRecord,
    LimitRateRecord,
    NamespaceRateRecord,
]
