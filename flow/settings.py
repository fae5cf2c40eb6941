"""Process configuration: every ``FLOW_`` environment variable, read in one place.

Build a :class:`Settings` once per process with :meth:`Settings.from_env` and pass
it down; tests pass a plain dict. The README's configuration table lists the same
variables with the same defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flow.errors import ConfigurationError

#: Broker URL meaning "Dramatiq's in-process StubBroker" (the embedded default).
IN_PROCESS_BROKER = "stub://"
DISTRIBUTED_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
#: Longest FLOW_EVENT_DEDUP_S: a year of events remembered (much more leaves the calendar).
MAX_EVENT_DEDUP_S = 31_536_000
#: Longest ``broker_blocked_timeout_s``: the engine's connection gives up a blocked publish
#: after 60 s (flow/engine/rabbit.py); no HTTP client waits longer for a start's answer.
MAX_BROKER_BLOCKED_TIMEOUT_S = 60
#: Largest ``max_start_backlog``: far past any backlog the engines could work off, and a
#: LIMIT every database takes.
MAX_START_BACKLOG = 1_000_000_000


@dataclass(frozen=True)
class Settings:
    """Everything a Libero Flow process reads from its environment."""

    #: Peewee database URL. ``sqlite:///flow.db`` or ``postgres://user@host/db``.
    database_url: str = "sqlite:///flow.db"
    #: ``amqp://...`` for RabbitMQ, ``stub://`` for the in-process broker.
    broker_url: str = DISTRIBUTED_BROKER
    #: Extra packages searched for ``BaseActivity`` subclasses, besides ``activities``.
    activity_packages: tuple[str, ...] = ()
    #: Directory of ``*.json`` workflow definitions.
    definitions_dir: str = "workflows"
    #: Prefix of every Dramatiq queue name: ``<prefix>.engine``, ``<prefix>.activities``.
    queue_prefix: str = "flow"
    #: The worker pools a ``dramatiq flow.actors`` process started without ``--queues``
    #: serves (``gpu,default``: ``<prefix>.activities.gpu`` and ``<prefix>.activities``);
    #: empty: the default pool only. ``--queues`` (or ``flow worker --pool``) wins. Checked
    #: (and turned into queues) by :func:`flow.worker.pools.served_queues`.
    worker_pools: tuple[str, ...] = ()
    #: Exchange and routing key of the plain-JSON start message (RabbitMQ only).
    start_exchange: str = "start_workflow"
    start_routing_key: str = "workflow_starter"
    #: When set, the API requires ``Authorization: Bearer <token>``.
    api_token: str | None = dataclasses.field(default=None, repr=False)
    #: A JSON or TOML file of per-namespace tokens (stored as SHA-256) with their roles, and
    #: the namespaces' quotas (:mod:`flow.core.namespaces`); read once by each process
    #: that answers the API or starts workflows (the quotas hold at every door).
    tokens_file: str | None = None
    #: The namespace the CLI's remote commands and :class:`flow.client.Client` act in
    #: (sent as ``X-Flow-Namespace``, which the API checks: 400 naming its pattern); unset:
    #: the token's own, else ``default``.
    namespace: str | None = None
    #: Signs callback tokens (``POST /signals/{token}``); the same on every API and engine
    #: process, at least 32 characters. Unset: the secret ``flow migrate`` stored in the database.
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    #: Where the CLI's remote commands (``flow start``, ``flow status``, ...) find the API.
    api_url: str = "http://127.0.0.1:8000"
    #: Most workflow actors alive at once in one engine process.
    max_live_actors: int = 1000
    #: An actor idle this long is stopped; the next event rebuilds it from the database.
    actor_idle_s: float = 30.0
    #: Connections in the PostgreSQL pool of one process.
    db_pool_size: int = 16
    #: Worker-side limit on one activity attempt, in seconds (Dramatiq's time limit).
    activity_time_limit_s: float = 600.0
    #: A message still in the outbox this long after it was due is sent again.
    outbox_grace_s: float = 30.0
    #: How often the engine looks for owed messages and due timers, in seconds.
    outbox_poll_s: float = 1.0
    #: How often each engine admits what waits for a concurrency limit when nothing it
    #: committed woke it (a slot given back by another engine, a limit raised), and picks
    #: up the grants other engines made for its partitions, in seconds.
    limits_poll_s: float = 0.2
    #: Most workflows one bulk operation (``POST /batches``) handles per second.
    batch_rate: float = 100.0
    #: Partitions of a new database (fixed when it is created; later it must match or stay unset).
    partitions: int | None = None
    #: How long an engine's hold on a partition lasts without renewal; a dead engine's
    #: partitions are taken over this long after its last heartbeat.
    partition_lease_s: float = 10.0
    #: Most transitions one group commit writes.
    commit_max_batch: int = 500
    #: Ended workflows are deleted this many days after they ended (by each engine, for
    #: the partitions it holds; ``flow prune`` by hand); 0 keeps them forever.
    retention_days: float = 0.0
    #: How often each engine deletes what retention allows, in seconds.
    retention_interval_s: float = 3600.0
    #: Fault injection for the fault suite (``kind:point:probability,...``); unset in production.
    test_faults: str | None = None
    #: Deliveries of one activity attempt (a worker that crashed counts) before it fails.
    max_deliveries: int = 3
    #: A worker reports an attempt as started once it has run this long (quicker ones
    #: report only their result, which carries the start time).
    started_report_delay_ms: int = 100
    #: Largest workflow input or activity output, in bytes of JSON.
    max_payload_bytes: int = 262_144
    #: Most bytes of signal payloads a workflow keeps (signals no step has taken yet),
    #: together; a signal that would pass it is refused (413).
    max_inbox_bytes: int = 16_777_216
    #: History entries past which a workflow is warned about: ``history_warning`` in the
    #: API, and one WARNING in the engine's log when it passes (issue 25; Temporal warns
    #: at 10,240). A batch job belongs in a child workflow per batch.
    history_warn: int = 10_000
    #: Largest request body the API accepts, in bytes.
    max_body_bytes: int = 1_048_576
    #: Start requests (``POST /workflows``) one API process works on at once; one more is
    #: answered 429 at once. Below gunicorn's 16 threads a process, so reads are served
    #: during a flood of starts (``api/gunicorn_conf.py``).
    max_starts_in_flight: int = 12
    #: Workflows created and not yet started by an engine, past which the API answers a
    #: start 503 (read at most every ``START_BACKLOG_TTL_S`` per process, flow/service/intake.py).
    max_start_backlog: int = 10_000
    #: Longest a listing a client shapes (``GET /workflows`` and its filters) may run, in seconds.
    query_timeout_s: float = 5.0
    #: A PostgreSQL connection on which the server sends nothing this long (connecting, or
    #: waiting on a statement) is given up (the API answers 503), and the server rolls back
    #: a transaction whose client went silent this long; in seconds, longer than
    #: ``query_timeout_s``.
    database_timeout_s: float = 6.0
    #: Longest a publish waits while RabbitMQ blocks publishers (a memory or disk alarm),
    #: in seconds; for as long again afterwards the process refuses to publish without
    #: trying (the API answers a start 503 with ``Retry-After``, nothing stored).
    broker_blocked_timeout_s: float = 3.0
    #: Port of the Prometheus exporter of ``dramatiq flow.actors`` processes; unset: none.
    metrics_port: int | None = None
    #: How long an event's id is remembered, in seconds: the same id sent again within it
    #: starts nothing (and ``GET /events/{id}`` finds it).
    event_dedup_s: float = 86_400.0
    #: Log format: ``text`` or ``json``.
    log_format: str = "text"
    #: Log level name; unset means INFO (WARNING for ``flow run``).
    log_level: str | None = None

    @property
    def engine_queue(self) -> str:
        """The engines' shared queue: starts by name from outside; anything else is
        forwarded to its workflow's partition queue (``<prefix>.engine.<n>``)."""
        return f"{self.queue_prefix}.engine"

    @property
    def activity_queue(self) -> str:
        """Queue the activity workers consume."""
        return f"{self.queue_prefix}.activities"

    @property
    def cancel_exchange(self) -> str:
        """Fanout exchange of cancel notices, which every worker process listens to."""
        return f"{self.queue_prefix}.cancellations"

    @property
    def start_queue(self) -> str:
        """Queue bound to the start exchange, consumed by the engine."""
        return f"{self.queue_prefix}.{self.start_routing_key}"

    @property
    def event_exchange(self) -> str:
        """Exchange (direct, durable) of events sent as plain JSON; its queue has the same name."""
        return f"{self.queue_prefix}.events"

    @property
    def uses_in_process_broker(self) -> bool:
        return self.broker_url == IN_PROCESS_BROKER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, embedded: bool = False) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``).

        ``embedded=True`` is for ``flow run``/``flow up``: the broker then defaults
        to the in-process one, so nothing but Python is needed.
        """
        env = os.environ if environ is None else environ
        defaults = cls(broker_url=IN_PROCESS_BROKER if embedded else DISTRIBUTED_BROKER)
        values: dict[str, Any] = {}  # each value of its field's type (_parse)
        for field in dataclasses.fields(cls):
            var = "FLOW_" + field.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(var, raw, getattr(defaults, field.name), field.type)
        settings = dataclasses.replace(defaults, **values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(f"FLOW_LOG_FORMAT must be 'text' or 'json', not {self.log_format!r}")
        if not self.queue_prefix.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ConfigurationError(
                f"FLOW_QUEUE_PREFIX may hold letters, digits, '.', '_' and '-' only, not {self.queue_prefix!r}"
            )
        scheme = self.broker_url.split("://", 1)[0]
        if scheme not in ("stub", "amqp", "amqps"):
            raise ConfigurationError(
                f"FLOW_BROKER_URL must start with amqp://, amqps:// or be stub://, not {self.broker_url!r}"
            )
        for name in (
            "max_live_actors",
            "db_pool_size",
            "max_body_bytes",
            "max_starts_in_flight",
            "max_start_backlog",
            "max_deliveries",
            "max_payload_bytes",
            "max_inbox_bytes",
            "history_warn",
            "commit_max_batch",
            "actor_idle_s",
            "activity_time_limit_s",
            "outbox_grace_s",
            "outbox_poll_s",
            "limits_poll_s",
            "batch_rate",
            "partition_lease_s",
            "retention_interval_s",
            "query_timeout_s",
            "database_timeout_s",
            "broker_blocked_timeout_s",
            "event_dedup_s",
        ):
            value = getattr(self, name)
            # ``not value > 0`` also refuses NaN, which compares false with everything.
            if not value > 0 or value == math.inf:
                raise ConfigurationError(f"FLOW_{name.upper()} must be a positive finite number, not {value}")
        if self.event_dedup_s > MAX_EVENT_DEDUP_S:  # a year; far more overflows the calendar at every event
            raise ConfigurationError(
                f"FLOW_EVENT_DEDUP_S must be at most {MAX_EVENT_DEDUP_S} (a year), not {self.event_dedup_s:g}"
            )
        if self.max_start_backlog > MAX_START_BACKLOG:
            raise ConfigurationError(
                f"FLOW_MAX_START_BACKLOG must be at most {MAX_START_BACKLOG}, not {self.max_start_backlog}: "
                "it bounds a walk of the unstarted workflows (its LIMIT)"
            )
        if self.broker_blocked_timeout_s > MAX_BROKER_BLOCKED_TIMEOUT_S:
            raise ConfigurationError(
                f"FLOW_BROKER_BLOCKED_TIMEOUT_S must be at most {MAX_BROKER_BLOCKED_TIMEOUT_S} (the engine's own), not "
                f"{self.broker_blocked_timeout_s:g}: a publish holds the thread that sends it (a request's) this long"
            )
        if self.database_timeout_s <= self.query_timeout_s:
            raise ConfigurationError(
                f"FLOW_DATABASE_TIMEOUT_S ({self.database_timeout_s:g}) must be longer than FLOW_QUERY_TIMEOUT_S "
                f"({self.query_timeout_s:g}): a listing over its budget is cancelled by the server before the "
                "connection is given up"
            )
        if not 0 <= self.retention_days < math.inf:
            raise ConfigurationError(
                f"FLOW_RETENTION_DAYS must be a finite number of days, 0 or more (0 keeps workflows forever), "
                f"not {self.retention_days}"
            )
        if self.started_report_delay_ms < 0:
            raise ConfigurationError(
                f"FLOW_STARTED_REPORT_DELAY_MS must be 0 or more, not {self.started_report_delay_ms}"
            )
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise ConfigurationError(
                f"FLOW_SECRET_KEY must be at least 32 characters (it signs callback tokens), not {len(self.secret_key)}"
            )
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise ConfigurationError(f"FLOW_METRICS_PORT must be a TCP port (1-65535), not {self.metrics_port}")
        if self.partitions is not None and not 1 <= self.partitions <= 1024:
            raise ConfigurationError(f"FLOW_PARTITIONS must be between 1 and 1024, not {self.partitions}")
        from flow.faults import FaultInjector

        FaultInjector.parse(self.test_faults)  # refuses a malformed spec, naming the variable


def _parse(var: str, raw: str, default: object, type_name: object) -> object:
    """Turn one environment string into the type of its field's default."""
    try:
        if "tuple" in str(type_name):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int) or "int" in str(type_name):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as e:
        raise ConfigurationError(f"{var}={raw!r} is not a valid {type(default).__name__}") from e
    return raw
