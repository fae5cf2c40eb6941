"""Cancel notices reaching a worker process: a pika consumer of the fanout exchange
``<prefix>.cancellations`` (docs/design.md, "Heartbeats and cancellation").

Each worker process binds its own exclusive, auto-deleted queue to the exchange, so
every notice reaches every worker; the one running the attempt sets its cancel flag
(:data:`flow.worker.running.RUNNING`), and the activity's next ``self.heartbeat()``
raises. A notice lost while a worker was disconnected costs nothing lasting: the
attempt's next heartbeat reaches the engine, which answers it with a notice again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import pika

from flow.core.pools import pool_of
from flow.loops import Reconnecting
from flow.wire.attempts import CancelNotice
from flow.worker.running import RUNNING, RunningAttempts

logger = logging.getLogger(__name__)


class CancellationListener(dramatiq.Middleware):
    """Listens for cancel notices from the worker's boot to its shutdown; reconnects
    until stopped."""

    def __init__(
        self,
        *,
        url: str,
        exchange: str,
        activity_queue: str,
        running: RunningAttempts = RUNNING,
        reconnect_pause_s: float = 2.0,
        max_reconnect_pause_s: float = 5.0,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.activity_queue = activity_queue
        self.running = running
        self.reconnect_pause_s = reconnect_pause_s
        self._consumer = Reconnecting(
            "flow-cancellations",
            connect=lambda: pika.BlockingConnection(pika.URLParameters(self.url)),
            consume=self._consume,
            close=_close,
            pause_s=reconnect_pause_s,
            max_pause_s=max_reconnect_pause_s,
        )
        #: Set while bound to the exchange (tests wait on it).
        self.listening = threading.Event()

    def __repr__(self) -> str:
        return f"<CancellationListener {self.exchange}>"

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and not any(pool_of(self.activity_queue, q) is not None for q in queues):
            return  # an engine-only process runs no attempt (a pool-only one does)
        self.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.stop()

    def start(self) -> None:
        self._consumer.start()

    def stop(self) -> None:
        # consume() sees the stop within its inactivity timeout (0.5 s).
        self._consumer.stop(5)

    def handle(self, body: bytes) -> None:
        try:
            message = dramatiq.Message.decode(body)
            notice = CancelNotice.from_message(message)
        except Exception as e:  # anything on the exchange: one bad body must not deafen the worker
            logger.warning("ignoring an unreadable cancel notice (%s: %s)", type(e).__name__, e)
            return
        if self.running.cancel(notice.key, sent_ms=message.message_timestamp):
            logger.info(
                "attempt %d of activity %d of workflow %s told to stop",
                notice.attempt,
                notice.position,
                notice.workflow_id,
            )

    def _consume(self, connection: pika.BlockingConnection) -> None:
        """Bind a queue of this process's own to the exchange; handle notices until stopped."""
        try:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(queue, self.exchange)
            self.listening.set()
            self._consumer.connected()
            for _method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.5):
                if self._consumer.stopping.is_set():
                    break
                if body is not None:
                    self.handle(body)
        finally:
            self.listening.clear()


def _close(connection: pika.BlockingConnection) -> None:
    if connection.is_open:
        connection.close()
