"""Everything in one process: engine, worker and store, on the in-process broker.

``flow run`` and ``flow up`` use this. It is the distributed code path — the same
tasks, engine (one engine holding every partition), actors, group commit and
decisions — with Dramatiq's in-process broker and in-process ``dramatiq.Worker``s
instead of RabbitMQ and separate processes. The in-process broker loses its
messages with the process, so the engine re-derives what each unfinished workflow
is owed when it takes its partitions (:mod:`flow.core.recovery`).

Durability: SQLite in WAL mode with ``synchronous=NORMAL``; a commit survives a
crash of the process (and the next start resumes every unfinished workflow), not
necessarily a power loss.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import dramatiq

from flow.core.definition import Definition
from flow.core.pools import pool_of
from flow.core.priority import DEFAULT_PRIORITY
from flow.core.start_request import check_priority
from flow.errors import PollTimeout
from flow.loops import poll_until
from flow.persistence.mapping import StoredWorkflow
from flow.process.inprocess import InProcessBroker, InProcessTransport
from flow.process.runtime import Runtime, build_engine
from flow.settings import IN_PROCESS_BROKER, Settings

logger = logging.getLogger(__name__)

#: Threads handling the shared engine queue (starts by name) in one embedded process.
ENGINE_THREADS = 2

#: How long stopping waits for running activities before leaving them to the next start.
STOP_TIMEOUT_MS = 5000


#: The database URLs of the flows running in this process (see :meth:`EmbeddedFlow.__enter__`).
_running: list[str] = []


class EmbeddedFlow:
    """A running in-process engine and worker. Use as a context manager."""

    def __init__(self, settings: Settings, *, worker_threads: int = 4) -> None:
        if not settings.uses_in_process_broker:
            settings = dataclasses.replace(settings, broker_url=IN_PROCESS_BROKER)
        self.settings = settings
        self.runtime = Runtime.build(settings, engine=False)
        self.runtime.store.migrate(partitions=settings.partitions)
        broker = self.runtime.broker
        assert isinstance(broker, InProcessBroker)
        self.transport = InProcessTransport(broker, partition_prefix=f"{settings.engine_queue}.")
        self.engine = build_engine(self.runtime, transport=self.transport, recover=True)
        # Two workers, as engine and worker processes would be: slow activities must
        # never take the threads that handle engine messages. Each adds Dramatiq's
        # internal worker middleware to the broker, which warns about the second; it
        # is harmless here (each worker only consumes its own queue), so say nothing.
        logging.getLogger(f"dramatiq.broker.{type(broker).__name__}").addFilter(_SameMiddlewareTwice())
        activities = dramatiq.Worker(
            broker, queues={settings.activity_queue}, worker_threads=worker_threads, worker_timeout=100
        )
        broker.add_middleware(_EveryPool(activities, settings.activity_queue))
        self._workers = [
            dramatiq.Worker(broker, queues={settings.engine_queue}, worker_threads=ENGINE_THREADS, worker_timeout=100),
            activities,
        ]

    def __enter__(self) -> EmbeddedFlow:
        others = {url for url in _running if url != self.settings.database_url}
        if others:
            # The models are bound to one database per process (flow.persistence.models.bind):
            # the flow already running now reads and writes this one, and both engines take
            # each other's partitions. One flow per process, or all on one database.
            logger.error(
                "another embedded flow runs in this process on %s: both now use %s",
                ", ".join(sorted(others)),
                self.settings.database_url,
            )
        _running.append(self.settings.database_url)
        # Dramatiq's time-limit watchdog starts on process_boot, which only its CLI emits.
        self.runtime.broker.emit_after("process_boot")
        for worker in self._workers:
            worker.start()
        self.engine.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        _running.remove(self.settings.database_url)
        # In-process messages cannot be handed back to a broker; whatever is still
        # running is resumed from the database on the next start.
        for worker in reversed(self._workers):
            worker.stop(timeout=STOP_TIMEOUT_MS)
        self.engine.stop()
        self.runtime.service.close()
        self.runtime.broker.close()
        close_all = getattr(self.runtime.store.database, "close_all", None)
        if close_all is not None:  # a pool's idle connections (a test process starts hundreds of flows)
            close_all()

    def add_definition(self, definition: Definition) -> int:
        """Register a definition (e.g. from a file outside the directory); return its version."""
        _, version, _ = self.runtime.service.register(dict(definition.body))
        return version

    def start(
        self,
        name: str,
        input_data: Any = None,
        *,
        idempotency_key: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a workflow and tell the engine to start it; return its id. ``priority``:
        1 (first) to 5 (last); :class:`~flow.errors.InvalidInput` naming it otherwise."""
        state, _ = self.runtime.service.start(
            name,
            {} if input_data is None else input_data,
            idempotency_key=idempotency_key,
            priority=check_priority(priority, path="priority"),
            attributes=attributes,
        )
        return state.id

    def wait(
        self,
        workflow_id: str,
        *,
        timeout_s: float | None = None,
        on_event: Callable[[dict[str, Any], StoredWorkflow], None] | None = None,
        poll_s: float = 0.05,
    ) -> StoredWorkflow:
        """Block until the workflow ends (or ``timeout_s`` passes); return its last state.

        ``on_event`` is called with each new history entry, in order, as it is committed.
        """
        store = self.runtime.store
        last_event = 0
        latest: StoredWorkflow | None = None

        def ended() -> StoredWorkflow | None:
            nonlocal last_event, latest
            latest = row = store.get(workflow_id)
            for event in store.events(workflow_id, after_id=last_event):
                last_event = event["id"]
                if on_event:
                    on_event(event, row)
            return row if row.state.status.ended else None

        try:
            return poll_until(ended, timeout_s=timeout_s, every_s=poll_s, what=f"workflow {workflow_id} to end")
        except PollTimeout:
            assert latest is not None  # ended() ran at least once
            return latest


class _EveryPool(dramatiq.Middleware):
    """Serves every worker pool in this process, so that a laptop runs every definition:
    each pool's queue, declared when an attempt is first sent to it
    (:class:`~flow.process.inprocess.InProcessTransport`), joins the activity worker's
    whitelist before Dramatiq's worker adds its consumer."""

    def __init__(self, worker: dramatiq.Worker, activity_queue: str) -> None:
        self.worker = worker
        self.activity_queue = activity_queue

    def before_declare_queue(self, broker: dramatiq.Broker, queue_name: str) -> None:
        if pool_of(self.activity_queue, queue_name) is not None and self.worker.consumer_whitelist:
            self.worker.consumer_whitelist.add(queue_name)


class _SameMiddlewareTwice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "adding a middleware of the same type twice" not in record.getMessage()
