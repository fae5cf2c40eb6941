"""The engine's RabbitMQ connection: consume, settle, publish with batched confirms.

One pika ``SelectConnection`` runs in its own I/O thread: a consuming channel (one
consumer per held partition: :mod:`flow.engine.consuming`) and a publishing channel in
confirm mode (:mod:`flow.engine.publishing`), reconnected by :class:`flow.loops.Reconnecting`
with the queues declared again (:mod:`flow.engine.declaring`). This module owns the
connection, its lifecycle and the requests of other threads. Publishing
many messages and waiting once for their confirms is what makes group commit pay
off: a blocking channel waits for each confirm in turn (about 2.5k/s one by one).
Every other thread talks to the I/O thread through ``add_callback_threadsafe``;
pika is not thread-safe.

While RabbitMQ blocks the connection (a memory or disk alarm: it reads nothing from it
until the alarm clears), a batch is not published into pika's buffer but failed at once:
it stays in the outbox and the outbox sends it when RabbitMQ unblocks the connection
(docs/design.md, "When the network lies").
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from flow.engine.consuming import Consumers
from flow.engine.declaring import Declarations
from flow.engine.publishing import Publisher
from flow.engine.transport import Delivery, OnPublished
from flow.loops import Reconnecting
from flow.wire.outgoing import Outgoing

logger = logging.getLogger(__name__)


class RabbitTransport:
    """The engine's RabbitMQ connection (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        declare: tuple[str, ...] = (),
        activity_queue: str | None = None,
        prefetch: int = 256,
        heartbeat_s: int = 15,
        reconnect_s: float = 1.0,
        max_reconnect_s: float = 2.0,
        close_patience_s: float = 2.0,
    ) -> None:
        self.parameters = pika.URLParameters(url)
        if self.parameters.heartbeat is None:  # a ``?heartbeat=N`` in the URL wins
            self.parameters.heartbeat = heartbeat_s
        # Blocked longer than this (its unconfirmed publishes stay owed in the outbox,
        # its unacknowledged deliveries come back): start over on a new connection.
        self.parameters.blocked_connection_timeout = 60
        self.declare = declare
        self._declarations = Declarations(activity_queue)
        self._publishing = Publisher(self._declarations)
        self._confirms = self._publishing.confirms
        self._consuming = Consumers(self._publishing.declare, prefetch=prefetch)
        self.prefetch = prefetch
        self.reconnect_s = reconnect_s
        #: How long :meth:`stop` waits for RabbitMQ to answer the close before dropping the socket.
        self.close_patience_s = close_patience_s
        self._on_ready: Callable[[], None] = lambda: None
        self._connection: pika.SelectConnection | None = None
        self._ready = False
        # Backing off to 2 s at most: the engine's leases lapse after FLOW_PARTITION_LEASE_S
        # without its broker, so it must notice the broker's return soon.
        self._io = Reconnecting(
            "flow-engine-amqp",
            connect=self._connect,
            consume=lambda connection: connection.ioloop.start(),
            close=self._forget_connection,
            interrupt=lambda connection: connection.ioloop.add_callback_threadsafe(self._close),
            pause_s=reconnect_s,
            max_pause_s=max_reconnect_s,
        )
        self._stopping = self._io.stopping
        self.disconnected_since: float | None = time.monotonic()

    def __repr__(self) -> str:
        return f"<RabbitTransport {self.parameters.host}:{self.parameters.port} ready={self._ready}>"

    @property
    def fifo_queues(self) -> set[str]:
        """Pool queues an earlier release declared without priorities (kept as they are)."""
        return self._declarations.fifo_queues

    @property
    def blocked(self) -> bool:
        """Does RabbitMQ block this connection's publishes (a memory or disk alarm)?"""
        return self._publishing.blocked

    @property
    def connected(self) -> bool:
        """Can it publish now: connected, and not blocked by RabbitMQ."""
        return self._ready and not self._publishing.blocked

    # -- lifecycle (any thread) ---------------------------------------------------------

    def start(self, on_delivery: Callable[[Delivery], None], on_ready: Callable[[], None]) -> None:
        self._consuming.on_delivery = on_delivery
        self._on_ready = on_ready
        self._io.start()

    def stop(self) -> None:
        self._io.stop(10)

    @property
    def running(self) -> bool:
        """Is the I/O thread alive (started and not yet stopped)?"""
        return self._io.is_alive()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every published message is confirmed (or failed); True if none is left.

        Not while RabbitMQ blocks the connection: it reads nothing until the alarm clears, so
        no confirm can come, and what is unconfirmed stays owed in the outbox."""
        deadline = time.monotonic() + timeout_s
        while self._confirms and not self._publishing.blocked and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._confirms

    def ready_in(self, queue: str, timeout_s: float = 2.0) -> int | None:
        """Messages ready in ``queue`` (RabbitMQ's count by a passive declare; those delivered
        and unacknowledged are not); None if not connected or unanswered in ``timeout_s``."""
        answer: list[int] = []
        answered = threading.Event()

        def counted(frame: Any) -> None:
            answer.append(frame.method.message_count)
            answered.set()

        if self._call(lambda: self._publishing.count(queue, counted)):
            answered.wait(timeout_s)
        return answer[0] if answer else None

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._ready and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._ready

    # -- requests from other threads ----------------------------------------------------

    def subscribe(self, queue: str) -> None:
        self._consuming.want(queue)
        self._call(lambda: self._consuming.consume(queue))

    def unsubscribe(self, queue: str) -> None:
        self._consuming.unwant(queue)
        self._call(lambda: self._consuming.cancel(queue))

    def settle(self, deliveries: list[Delivery], *, ack: bool, requeue: bool = True) -> None:
        if deliveries:
            self._call(lambda: self._consuming.settle(deliveries, ack, requeue))

    def publish(self, messages: list[Outgoing], on_done: OnPublished) -> None:
        if not messages:
            return
        if not self._call(lambda: self._publishing.publish(messages, on_done)):
            on_done([], [m.id for m in messages])

    def _call(self, fn: Callable[[], None]) -> bool:
        connection = self._connection
        if connection is None or self._stopping.is_set():
            return False
        try:
            connection.ioloop.add_callback_threadsafe(fn)
        except Exception:  # the connection closed meanwhile
            return False
        return True

    # -- the I/O thread ---------------------------------------------------------------------

    def _connect(self) -> pika.SelectConnection:
        """A connection whose callbacks drive everything; ``ioloop.start()`` runs it until
        it closes (see :class:`flow.loops.Reconnecting`)."""
        self._connection = pika.SelectConnection(
            self.parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
        )
        return self._connection

    def _forget_connection(self, connection: Any) -> None:
        self._connection = None

    def _close(self) -> None:
        """Close the connection (at :meth:`stop`) in bounded time: a blocked connection (RabbitMQ
        reads nothing) or a silent link never answers the closing handshake, and the stop waited
        for pika's 60 s blocked timeout. Blocked, the socket is dropped at once, else after
        ``close_patience_s``; what was not confirmed stays in the outbox."""
        connection = self._connection
        if connection is None:
            return
        if connection.is_open and not self._publishing.blocked:
            connection.close()
            connection.ioloop.call_later(self.close_patience_s, functools.partial(self._abort, connection))
        elif connection.is_open or connection.is_closing:
            self._abort(connection)
        else:
            connection.ioloop.stop()

    def _abort(self, connection: Any) -> None:
        if connection.is_closed:
            return
        # pika's own way to end a connection at once (its blocked timeout's): _on_closed follows.
        connection._terminate_stream(pika.exceptions.ConnectionClosedByClient(320, "engine stopping"))

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        logger.warning("engine cannot reach RabbitMQ (%s); retrying", error)
        connection.ioloop.stop()

    def _on_closed(self, connection: Any, reason: BaseException) -> None:
        if not self._stopping.is_set():
            logger.warning("engine lost RabbitMQ (%s); reconnecting", reason)
        self._ready = False
        self.disconnected_since = time.monotonic()
        self._consuming.lost()
        self._publishing.lost()  # what was not confirmed fails: it stays owed in the outbox
        connection.ioloop.stop()

    def _on_open(self, connection: Any) -> None:
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_publish_channel)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self._publishing.blocked = True
        logger.warning("RabbitMQ blocks the engine's publishes (%s); they stay in the outbox", frame.method.reason)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self._publishing.blocked = False
        logger.warning("RabbitMQ takes the engine's publishes again; the outbox sends what it owes")

    def _on_publish_channel(self, channel: Any) -> None:
        self._publishing.opened(channel, self._on_channel_closed, then=self._open_consume_channel)

    def _open_consume_channel(self) -> None:
        assert self._connection is not None
        self._connection.channel(on_open_callback=self._on_consume_channel)

    def _on_consume_channel(self, channel: Any) -> None:
        self._consuming.opened(channel, self._on_channel_closed, then=self._declare_all)

    def _declare_all(self) -> None:
        queues = list(self.declare)
        if not queues:
            self._became_ready()
            return
        remaining = {"n": len(queues)}

        def declared(queue: str) -> None:
            remaining["n"] -= 1
            if remaining["n"] == 0:
                self._became_ready()

        for queue in queues:
            self._publishing.declare(queue, functools.partial(declared, queue))

    def _became_ready(self) -> None:
        self._consuming.begin()
        self._ready = True
        self._io.connected()
        self.disconnected_since = None
        logger.info("engine connected to RabbitMQ")
        self._consuming.resume()
        try:
            self._on_ready()
        except Exception:
            logger.exception("on_ready failed")

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        # A channel closed by the broker (a refused declare, a missing queue): start
        # over with a fresh connection, which re-declares and re-subscribes everything.
        self._declarations.refused(reason)
        if self._connection is not None and self._connection.is_open and not self._stopping.is_set():
            logger.warning("engine's channel closed (%s); reconnecting", reason)
            self._connection.close()
