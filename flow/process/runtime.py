"""``Runtime``: one process's assembled parts — settings, database, broker, definitions,
the starting service and the Dramatiq tasks.

Every entry point (``dramatiq flow.actors``, the API, the CLI) builds one; building
binds the models to the database and connects to nothing. Only engine processes
build an engine: :class:`EngineLifecycle` does it when a ``dramatiq flow.actors``
process consumes the shared engine queue, and ``flow run``/``flow up`` do it in
:mod:`flow.process.embedded`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from activities.base import BaseActivity
from activities.discovery import discover
from flow.observability.metrics import EngineMetrics
from flow.persistence.models import bind
from flow.persistence.store import Store
from flow.process.broker import build_broker
from flow.process.tasks import declare
from flow.service.batches import BatchService
from flow.service.catalog import Catalog
from flow.service.events import EventService
from flow.service.schedules import ScheduleService
from flow.service.workflows import WorkflowService
from flow.settings import Settings
from flow.worker.pools import WorkerPools, served_queues

if TYPE_CHECKING:
    from flow.engine import Engine

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    broker: dramatiq.Broker
    store: Store
    activity_classes: dict[str, type[BaseActivity]]
    catalog: Catalog
    service: WorkflowService = field(init=False)
    schedules: ScheduleService = field(init=False)
    batches: BatchService = field(init=False)
    events: EventService = field(init=False)
    metrics: EngineMetrics = field(init=False)
    tasks: dict[str, dramatiq.Actor[Any, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = EngineMetrics()
        self.service = WorkflowService(self.settings, self.store, self.catalog, self.broker, self.activity_classes)
        self.schedules = ScheduleService(self.service)
        self.batches = BatchService(self.service)
        self.events = EventService(self.service)
        self.tasks = declare(
            self.broker,
            settings=self.settings,
            service=self.service,
            events=self.events,
            activity_classes=self.activity_classes,
            metrics=self.metrics,
        )

    @classmethod
    def build(cls, settings: Settings, *, broker: dramatiq.Broker | None = None, engine: bool = True) -> Runtime:
        """Assemble a process; ``engine`` lets a ``dramatiq flow.actors`` process that
        consumes the shared engine queue run an engine (see :class:`EngineLifecycle`)."""
        served_queues(settings)  # a bad FLOW_WORKER_POOLS stops every process at once, named
        classes = discover(settings.activity_packages)
        catalog = Catalog.from_directory(settings.definitions_dir, known_activities=classes)
        broker = broker or build_broker(settings)
        broker.add_middleware(CurrentMessage())
        store = Store.from_url(
            settings.database_url,
            pool_size=settings.db_pool_size,
            query_timeout_s=settings.query_timeout_s,
            silence_s=settings.database_timeout_s,
        )
        bind(store.database)
        runtime = cls(settings, broker, store, classes, catalog)
        if engine:
            broker.add_middleware(EngineLifecycle(runtime))
        # After EngineLifecycle: it may set the whitelist whose pool queues this declares.
        broker.add_middleware(WorkerPools(settings.activity_queue))
        return runtime

    def __repr__(self) -> str:
        return f"<Runtime broker={type(self.broker).__name__} store={self.store!r}>"


def build_engine(runtime: Runtime, *, transport: Any = None, recover: bool = False) -> Engine:
    """The engine of this process, on ``runtime``'s database (partition count from it)."""
    from flow.core.partitions import partition_queue
    from flow.engine import Engine
    from flow.engine.rabbit import RabbitTransport
    from flow.faults import FaultInjector
    from flow.persistence.engine_store import EngineStore

    settings = runtime.settings
    faults = FaultInjector.parse(settings.test_faults)
    partitions = runtime.service.partitions
    if transport is None:
        queues = (settings.activity_queue, *(partition_queue(settings.queue_prefix, p) for p in range(partitions)))
        transport = RabbitTransport(settings.broker_url, declare=queues)
    return Engine(
        settings,
        EngineStore(runtime.store.database, faults=faults, history_warn=settings.history_warn),
        transport,
        partitions=partitions,
        metrics=runtime.metrics,
        recover=recover,
        faults=faults,
        schedule_starter=runtime.schedules,
        batch_controls=runtime.batches,
        event_starter=runtime.events,
        callback_tokens=runtime.service.callback_tokens,
    )


class EngineLifecycle(dramatiq.Middleware):
    """Runs an engine in ``dramatiq flow.actors`` processes that consume the shared engine
    queue (and the AMQP start-message consumer beside it), and stops it with the worker.

    It also keeps Dramatiq's own consumers to the shared engine and activity queues (the
    pools' of ``FLOW_WORKER_POOLS``, the default one's when it is unset): a Dramatiq
    worker otherwise starts consuming every queue its broker declares, and a worker
    declares a partition queue whenever it reports a result there.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine: Any = None
        self.start_messages: Any = None
        self.event_messages: Any = None
        self._starting: threading.Thread | None = None
        self._stopping = threading.Event()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not worker.consumer_whitelist:
            settings = self.runtime.settings
            worker.consumer_whitelist = {settings.engine_queue, *served_queues(settings)}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        settings = self.runtime.settings
        whitelist = worker.consumer_whitelist  # None: every queue, the engine's too
        if (whitelist is not None and settings.engine_queue not in whitelist) or settings.uses_in_process_broker:
            return
        # In the background: the database may not answer yet, and the worker must boot anyway.
        self._starting = threading.Thread(target=self._start, name="flow-engine-start", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        from flow.process.amqp_start import StartMessageConsumer, event_handler

        settings = self.runtime.settings
        delay = 0.5
        while not self._stopping.is_set():
            try:
                engine = build_engine(self.runtime)
                break
            except Exception as e:
                logger.warning("engine cannot start yet (%s); trying again in %.1f s", e, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 10)
        else:
            return
        engine.start()
        self.engine = engine
        self.start_messages = StartMessageConsumer(
            self.runtime.service,
            url=settings.broker_url,
            exchange=settings.start_exchange,
            routing_key=settings.start_routing_key,
            queue=settings.start_queue,
            blocked_timeout_s=settings.broker_blocked_timeout_s,
        )
        self.start_messages.start()
        # The event door: a plain JSON event on the fanout exchange <prefix>.events.
        self.event_messages = StartMessageConsumer(
            self.runtime.service,
            url=settings.broker_url,
            exchange=settings.event_exchange,
            routing_key="",
            queue=settings.event_exchange,
            exchange_type="fanout",
            handle=event_handler(self.runtime.events),
            what="event message",
            blocked_timeout_s=settings.broker_blocked_timeout_s,
        )
        self.event_messages.start()
        logger.info("engine running; shared queue %s", settings.engine_queue)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After, not before: the worker threads first finish the messages they hold.
        self._stopping.set()
        if self._starting is not None:
            self._starting.join(30)
        if self.start_messages is not None:
            self.start_messages.stop()
        if self.event_messages is not None:
            self.event_messages.stop()
        if self.engine is not None:
            self.engine.stop()
        self.runtime.service.close()
