"""The engine's consuming channel (:mod:`flow.engine.rabbit`): one consumer per wanted
queue (the partitions the engine holds), started once the queue is declared, and the
settling of what they delivered.

Each delivery carries the connection's ``generation``: a delivery tag means something
only on the channel that delivered it, so what a lost connection delivered is not
settled on the next one (RabbitMQ gave it back already). The wanted queues are changed
from any thread; everything else runs on the connection's I/O thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flow.engine.transport import Delivery

logger = logging.getLogger(__name__)

#: ``declare(queue, then)``: declare ``queue`` on the connection, then call ``then()``.
Declare = Callable[[str, Callable[[], None]], None]


class Consumers:
    """The consumers of one connection at a time (see the module docstring)."""

    def __init__(self, declare: Declare, *, prefetch: int) -> None:
        self._declare = declare
        self.prefetch = prefetch
        self.on_delivery: Callable[[Delivery], None] = lambda d: None
        #: The open channel, its prefetch set; None between connections.
        self.channel: Any = None
        #: Counts the connections that became ready (see the module docstring).
        self.generation = 0
        self._active = False  # consuming: the connection is ready
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._consumers: dict[str, str] = {}  # queue -> consumer tag
        self._queue_of: dict[str, str] = {}  # consumer tag -> queue

    def __repr__(self) -> str:
        return f"<Consumers {sorted(self._consumers)} generation={self.generation}>"

    # -- any thread -------------------------------------------------------------------------

    def want(self, queue: str) -> None:
        with self._lock:
            self._wanted.add(queue)

    def unwant(self, queue: str) -> None:
        with self._lock:
            self._wanted.discard(queue)

    # -- the I/O thread ---------------------------------------------------------------------

    def opened(self, channel: Any, on_closed: Callable[[Any, BaseException], None], then: Callable[[], None]) -> None:
        """A new connection's consuming channel: set its prefetch, then ``then()``."""
        self.channel = channel
        channel.add_on_close_callback(on_closed)
        channel.basic_qos(prefetch_count=self.prefetch, callback=lambda _frame: then())

    def begin(self) -> None:
        """The connection is ready: a new generation of deliveries, and consumers may start."""
        self.generation += 1
        self._active = True

    def resume(self) -> None:
        """Consume every wanted queue (the connection just became ready)."""
        with self._lock:
            wanted = list(self._wanted)
        for queue in wanted:
            self.consume(queue)

    def lost(self) -> None:
        """The connection closed: its consumers and channel are gone."""
        self._active = False
        self.channel = None
        self._consumers.clear()
        self._queue_of.clear()

    def consume(self, queue: str) -> None:
        """Consume ``queue`` once it is declared, if it is still wanted then."""
        if not self._active or queue in self._consumers:
            return
        with self._lock:
            if queue not in self._wanted:
                return

        def start() -> None:
            with self._lock:
                still_wanted = queue in self._wanted
            if not still_wanted or self.channel is None or queue in self._consumers:
                return
            tag = self.channel.basic_consume(queue, self._on_message, auto_ack=False)
            self._consumers[queue] = tag
            self._queue_of[tag] = queue

        self._declare(queue, start)

    def cancel(self, queue: str) -> None:
        tag = self._consumers.pop(queue, None)
        if tag is not None and self.channel is not None and self.channel.is_open:
            self.channel.basic_cancel(tag)

    def settle(self, deliveries: list[Delivery], ack: bool, requeue: bool) -> None:
        channel = self.channel
        if channel is None or not channel.is_open:
            return  # the broker already gave them back with the old channel
        for d in deliveries:
            if d.generation != self.generation:
                continue
            if ack:
                channel.basic_ack(d.tag)
            else:
                channel.basic_nack(d.tag, requeue=requeue)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._queue_of.get(method.consumer_tag, method.routing_key)
        delivery = Delivery(queue, method.delivery_tag, self.generation, body, bool(method.redelivered))
        try:
            self.on_delivery(delivery)
        except Exception:
            logger.exception("handling a delivery from %s failed; it goes back to the queue", queue)
            channel.basic_nack(method.delivery_tag, requeue=True)


__all__ = ["Consumers", "Declare"]
