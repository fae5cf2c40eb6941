"""``Runtime``: one process's assembled parts — settings, store, broker, definitions, engine, tasks.

Every entry point (``dramatiq flow.actors``, the API, ``flow run``) builds one.
Building connects to nothing: the database and broker are reached on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from activities.base import BaseActivity
from activities.discovery import discover
from flow.amqp_start import StartMessageConsumer
from flow.broker import build_broker
from flow.definition import Catalog
from flow.engine import Engine
from flow.metrics import EngineMetrics
from flow.settings import Settings
from flow.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    broker: dramatiq.Broker
    store: Store
    activity_classes: dict[str, type[BaseActivity]]
    catalog: Catalog
    engine: Engine = field(init=False)
    metrics: EngineMetrics = field(init=False)
    tasks: dict[str, dramatiq.Actor[Any, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = EngineMetrics()
        self.engine = Engine(self.settings, self.store, self.catalog, self.broker, self.activity_classes)
        self.engine.metrics = self.metrics
        from flow.tasks import declare  # tasks need the runtime; import here to avoid a cycle

        self.tasks = declare(self)
        self.broker.add_middleware(EngineLifecycle(self))

    @classmethod
    def build(cls, settings: Settings, *, broker: dramatiq.Broker | None = None) -> Runtime:
        classes = discover(settings.activity_packages)
        catalog = Catalog.from_directory(settings.definitions_dir, known_activities=classes)
        broker = broker or build_broker(settings)
        broker.add_middleware(CurrentMessage())
        store = Store.from_url(settings.database_url, pool_size=settings.db_pool_size)
        return cls(settings, broker, store, classes, catalog)

    def __repr__(self) -> str:
        return f"<Runtime broker={type(self.broker).__name__} store={self.store!r}>"


class EngineLifecycle(dramatiq.Middleware):
    """Starts the engine's background loops in worker processes that consume the engine
    queue, and stops its actors when the worker shuts down."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.start_messages: StartMessageConsumer | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = worker.consumer_whitelist
        settings = self.runtime.settings
        if not queues or settings.engine_queue in queues:
            logger.info("engine running on queue %s", settings.engine_queue)
            self.runtime.engine.start_background()
            if not settings.uses_in_process_broker:
                self.start_messages = StartMessageConsumer(
                    self.runtime.engine,
                    url=settings.broker_url,
                    exchange=settings.start_exchange,
                    routing_key=settings.start_routing_key,
                    queue=settings.start_queue,
                )
                self.start_messages.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After, not before: the worker threads first finish the events they hold,
        # which need the actors.
        if self.start_messages is not None:
            self.start_messages.stop()
        self.runtime.engine.stop()
