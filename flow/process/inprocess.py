"""The engine's transport inside one process, for the embedded mode.

:class:`InProcessBroker` is Dramatiq's ``StubBroker`` routing the partition queues
straight to the embedded engine; :class:`InProcessTransport` keeps the transport
contract over it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from flow.engine.transport import Delivery, OnPublished
from flow.wire.attempts import CancelNotice
from flow.wire.messages import CANCEL_ATTEMPT, RUN_ACTIVITY
from flow.wire.outgoing import Outgoing
from flow.worker.running import RUNNING

logger = logging.getLogger(__name__)


class InProcessBroker(StubBroker):
    """Dramatiq's in-process broker, routing partition queues to the embedded engine.

    Workers report with ``broker.enqueue`` exactly as on RabbitMQ; a message for a
    queue the engine consumes goes straight to it instead of a stub queue.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes: dict[str, Callable[[dramatiq.Message[Any]], None]] = {}
        self.route_prefix: str | None = None

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if self.route_prefix is not None and message.queue_name.startswith(self.route_prefix):
            route = self.routes.get(self.route_prefix)
            if route is not None:
                self.emit_before("enqueue", message, delay)
                route(message)
                self.emit_after("enqueue", message, delay)
                return message
        return super().enqueue(message, delay=delay)


class InProcessTransport:
    """The :class:`Transport` contract over :class:`InProcessBroker`, for the embedded engine."""

    def __init__(self, broker: InProcessBroker, *, partition_prefix: str, redeliver_after_s: float = 0.05) -> None:
        self.broker = broker
        self.partition_prefix = partition_prefix
        self.redeliver_after_s = redeliver_after_s
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._parked: dict[str, deque[bytes]] = {}
        self._tags = 0
        self._in_hand: dict[int, Delivery] = {}
        self._on_delivery: Callable[[Delivery], None] = lambda d: None
        self._closed = False
        self.disconnected_since: float | None = None

    @property
    def connected(self) -> bool:
        return not self._closed

    def start(self, on_delivery: Callable[[Delivery], None], on_ready: Callable[[], None]) -> None:
        self._on_delivery = on_delivery
        self.broker.route_prefix = self.partition_prefix
        self.broker.routes[self.partition_prefix] = self._route
        on_ready()

    def stop(self) -> None:
        self._closed = True
        self.broker.routes.pop(self.partition_prefix, None)

    def _route(self, message: dramatiq.Message[Any]) -> None:
        self._offer(message.queue_name, message.encode())

    def _offer(self, queue: str, body: bytes, redelivered: bool = False) -> None:
        with self._lock:
            if queue not in self._wanted:
                self._parked.setdefault(queue, deque()).append(body)
                return
            self._tags += 1
            delivery = Delivery(queue, self._tags, 0, body, redelivered)
            self._in_hand[delivery.tag] = delivery
        self._on_delivery(delivery)

    def subscribe(self, queue: str) -> None:
        with self._lock:
            self._wanted.add(queue)
            parked = self._parked.pop(queue, deque())
        for body in parked:
            self._offer(queue, body)

    def unsubscribe(self, queue: str) -> None:
        with self._lock:
            self._wanted.discard(queue)

    def settle(self, deliveries: list[Delivery], *, ack: bool, requeue: bool = True) -> None:
        back = []
        with self._lock:
            for d in deliveries:
                if self._in_hand.pop(d.tag, None) is not None and not ack and requeue:
                    back.append(d)
        for d in back:
            if self._closed:
                continue
            # Later, on a timer thread: handing it back at once from inside the handler
            # that refused it would spin.
            timer = threading.Timer(self.redeliver_after_s, self._offer, (d.queue, d.body, True))
            timer.daemon = True
            timer.start()

    def publish(self, messages: list[Outgoing], on_done: OnPublished) -> None:
        confirmed, failed = [], []
        for outgoing in messages:
            if outgoing.actor_name == CANCEL_ATTEMPT:  # the workers run in this process
                notice = CancelNotice.from_kwargs(outgoing.kwargs)
                RUNNING.cancel(notice.key)
                confirmed.append(outgoing.id)
                continue
            try:
                if outgoing.actor_name == RUN_ACTIVITY and outgoing.queue_name not in self.broker.queues:
                    # A worker pool's queue, declared when first sent to, as the RabbitMQ
                    # transport declares every queue it publishes to.
                    self.broker.declare_queue(outgoing.queue_name)
                self.broker.enqueue(outgoing.message())
            except Exception as e:
                logger.error("in-process publish of %s failed: %s", outgoing.actor_name, e)
                failed.append(outgoing.id)
                continue
            confirmed.append(outgoing.id)
        on_done(confirmed, failed)
