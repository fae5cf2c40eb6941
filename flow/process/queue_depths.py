"""How many messages wait in a queue, as its broker counts them: what ``GET /pools``
and a step's ``waiting_for`` say of a worker pool's backlog.

RabbitMQ answers a passive ``queue_declare`` with the queue's ``message_count`` (the
messages ready, not those a worker already holds); a queue nobody declared yet has
had nothing sent to it, so it counts 0. The in-process broker counts its own queues.
Counts are kept for ``ttl_s``, so that a page polling a workflow opens at most one
broker connection per period per process, not one per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import pika
import pika.exceptions

from flow.settings import Settings

logger = logging.getLogger(__name__)

#: Seconds a count is reused.
DEPTH_TTL_S = 2.0
#: Seconds a count may take to come (connecting included): a view waits for it.
DEPTH_TIMEOUT_S = 2.0


class QueueDepths:
    """Ready messages per queue (None: the broker did not answer), cached for ``ttl_s``."""

    def __init__(
        self,
        settings: Settings,
        broker: Any,
        *,
        ttl_s: float = DEPTH_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._counted: dict[str, tuple[float, int | None]] = {}

    def __repr__(self) -> str:
        return f"<QueueDepths ttl_s={self.ttl_s}>"

    def of(self, queues: Collection[str]) -> dict[str, int | None]:
        """The depth of each of ``queues``."""
        with self._lock:
            now = self.clock()
            stale = [q for q in queues if q not in self._counted or now - self._counted[q][0] >= self.ttl_s]
            if stale:
                for queue, depth in self._count(stale).items():
                    self._counted[queue] = (now, depth)
            return {q: self._counted[q][1] for q in queues}

    def _count(self, queues: list[str]) -> dict[str, int | None]:
        if self.settings.uses_in_process_broker:
            return {q: self._in_process(q) for q in queues}
        try:
            return _rabbitmq_depths(self.settings.broker_url, queues)
        except Exception as e:  # noqa: BLE001 - any failure to reach the broker means "unknown"
            logger.warning("cannot count the messages of %s: %s: %s", ", ".join(queues), type(e).__name__, e)
            return dict.fromkeys(queues)

    def _in_process(self, queue: str) -> int:
        found = getattr(self.broker, "queues", {}).get(queue)
        return found.qsize() if found is not None else 0


def _rabbitmq_depths(url: str, queues: list[str]) -> dict[str, int | None]:
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = DEPTH_TIMEOUT_S
    parameters.blocked_connection_timeout = DEPTH_TIMEOUT_S
    parameters.connection_attempts = 1
    connection = pika.BlockingConnection(parameters)
    try:
        depths: dict[str, int | None] = {}
        channel = connection.channel()
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker as e:
                # 404: never declared, so nothing was ever sent to it. The broker closed
                # the channel either way: the next queue needs a new one.
                depths[queue] = 0 if e.reply_code == 404 else None
                channel = connection.channel()
        return depths
    finally:
        connection.close()
