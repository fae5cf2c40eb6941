"""The seed's start message: a plain JSON body on RabbitMQ, consumed by the engine.

Publish ``{"name": "DummyWorkflow", "input_data": {...}}`` (optionally with
``"idempotency_key"``) to exchange ``start_workflow`` with routing key
``workflow_starter``. The project declares the exchange (direct, durable), the queue
``<prefix>.workflow_starter`` bound to it, and its dead-letter queue
``<prefix>.workflow_starter.dead``.

Every failure is classified by :func:`flow.errors.is_retryable`. A message that
cannot start a workflow (not strict JSON, not such an object, an unknown workflow,
data the database refuses) is moved to the dead-letter queue at once, with the
reason in its ``x-flow-error`` header and in the log. A failure that may pass (the
database unreachable) puts a copy of the message, with its delivery count in the
``x-flow-deliveries`` header, at the back of the queue after a pause (0.5 s,
doubling up to 30 s), so the messages behind it go on; after
:data:`MAX_DELIVERIES` deliveries it is dead-lettered with the last reason. A
message whose handling was interrupted (the engine died or lost RabbitMQ) is
counted the same way, so not even a message that kills the engine loops forever.
Pauses are timers of pika's connection: nothing sleeps in its I/O thread. With the
AMQP ``message_id`` property set, a redelivered message starts its workflow only
once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pika

from flow.core import strict_json
from flow.core.event_triggers import parse_event
from flow.core.start_request import StartRequest, parse_start_request
from flow.errors import FlowError, is_retryable
from flow.loops import Reconnecting

if TYPE_CHECKING:
    from flow.service.events import EventService
    from flow.service.workflows import WorkflowService

logger = logging.getLogger(__name__)

#: Namespace of workflow ids derived from AMQP message ids.
_AMQP_NAMESPACE = uuid.UUID("5d1f6a4e-8c0b-4f63-9a51-2f0c3b7e9d10")

#: Deliveries of one start message before it is dead-lettered, when each one failed
#: for a reason that may pass. With the pauses below: about 7 minutes of outage.
MAX_DELIVERIES = 20
#: Pause before a message that failed is delivered again; doubled each time, up to
#: MAX_RETRY_PAUSE_S.
RETRY_PAUSE_S = 0.5
MAX_RETRY_PAUSE_S = 30.0
#: Header with the number of deliveries of a message so far.
DELIVERIES_HEADER = "x-flow-deliveries"
#: Header with the reason a message was dead-lettered.
ERROR_HEADER = "x-flow-error"
#: Longest reason in a header (the frame must stay small; the log has the rest).
_MAX_REASON_CHARS = 1000


def parse_start(body: bytes) -> StartRequest:
    """The start request in ``body``; :class:`~flow.errors.InvalidInput` (or
    :class:`~flow.errors.InvalidJson`) saying what is wrong."""
    return parse_start_request(strict_json.loads(body, what="the body"))


def event_handler(events: EventService) -> Callable[[bytes, str | None], str]:
    """The ``handle`` of the event door: the body is an event, ``{"type", "id", "data"}``,
    read as ``POST /events`` reads it; a redelivery is a resent id, which starts nothing."""

    def handle(body: bytes, message_id: str | None) -> str:
        received = events.send(parse_event(strict_json.loads(body, what="the body")))
        if received.duplicate:
            return f"event {received.event.id} from an event message: a resend, nothing started"
        return f"event {received.event.id} ({received.event.type}) from an event message"

    return handle


class StartMessageConsumer:
    """A pika consumer thread in the engine process; reconnects until stopped."""

    def __init__(
        self,
        service: WorkflowService,
        *,
        url: str,
        exchange: str,
        routing_key: str,
        queue: str,
        max_deliveries: int = MAX_DELIVERIES,
        retry_pause_s: float = RETRY_PAUSE_S,
        max_retry_pause_s: float = MAX_RETRY_PAUSE_S,
        reconnect_pause_s: float = 2.0,
        max_reconnect_pause_s: float = 5.0,
        blocked_timeout_s: float = 3.0,
        exchange_type: str = "direct",
        handle: Callable[[bytes, str | None], str] | None = None,
        what: str = "start message",
    ) -> None:
        """``handle(body, message_id)`` handles one message and says what it did (for the
        log), or raises; by default it starts the workflow a start message names. The
        event door (``<prefix>.events``) passes its own: every failure is classified,
        retried and dead-lettered the same way."""
        self.service = service
        self.exchange_type = exchange_type
        self.handle = handle or self._start
        #: What its messages are called in the log.
        self.what = what
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key
        self.queue = queue
        self.dead_queue = f"{queue}.dead"
        self.max_deliveries = max_deliveries
        self.retry_pause_s = retry_pause_s
        self.max_retry_pause_s = max_retry_pause_s
        self.reconnect_pause_s = reconnect_pause_s
        self.blocked_timeout_s = blocked_timeout_s
        self._consumer = Reconnecting(
            "flow-amqp-start",
            connect=self._connect,
            consume=self._consume,
            close=_close,
            interrupt=lambda connection: connection.add_callback_threadsafe(lambda: _close(connection)),
            pause_s=reconnect_pause_s,
            max_pause_s=max_reconnect_pause_s,
        )

    def __repr__(self) -> str:
        return f"<StartMessageConsumer {self.exchange}/{self.routing_key} -> {self.queue}>"

    def declare(self, channel: Any) -> None:
        """Declare the exchange, the queue, its binding and the dead-letter queue (durable)."""
        channel.exchange_declare(self.exchange, exchange_type=self.exchange_type, durable=True)
        channel.queue_declare(self.dead_queue, durable=True)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, self.exchange, routing_key=self.routing_key)

    def start(self) -> None:
        self._consumer.start()

    def stop(self) -> None:
        self._consumer.stop(10)

    def _connect(self) -> pika.BlockingConnection:
        parameters = pika.URLParameters(self.url)
        # A copy or a dead letter published while RabbitMQ blocks publishers would hold
        # this thread (and the acks behind it) until the alarm clears: give the connection
        # up instead, and the unacknowledged message comes back on the next one.
        parameters.blocked_connection_timeout = self.blocked_timeout_s
        return pika.BlockingConnection(parameters)

    def _consume(self, connection: pika.BlockingConnection) -> None:
        """Declare, then consume until the connection closes (or :meth:`stop` closes it)."""
        channel = connection.channel()
        channel.confirm_delivery()
        self.declare(channel)
        channel.basic_qos(prefetch_count=8)
        channel.basic_consume(self.queue, self._on_message)
        self._consumer.connected()
        logger.info("consuming %ss from %s", self.what, self.queue)
        channel.start_consuming()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """Runs in pika's I/O thread: handle, dead-letter or schedule again; never sleep."""
        deliveries = _deliveries(properties) + 1  # counting this one
        if method.redelivered:
            # This very copy was delivered before and never settled: the engine
            # stopped, or lost RabbitMQ, while handling it. Count that delivery in a
            # new copy before trying again, so that a message that kills the engine
            # is dead-lettered after max_deliveries instead of looping.
            self._again(channel, method, properties, body, deliveries, "its handling was interrupted", pause_s=0)
            return
        try:
            done = self.handle(body, properties.message_id)
        except Exception as e:
            reason = _describe(e)
            if is_retryable(e):
                # The count comes from a header anyone can set: cap the exponent.
                pause_s = min(self.retry_pause_s * 2 ** min(deliveries - 1, 32), self.max_retry_pause_s)
                self._again(channel, method, properties, body, deliveries, reason, pause_s=pause_s)
            else:
                self._dead_letter(channel, properties, body, reason)
                channel.basic_ack(method.delivery_tag)
            return
        channel.basic_ack(method.delivery_tag)
        logger.info("%s", done)

    def _start(self, body: bytes, message_id: str | None) -> str:
        """The start message's handling (the default ``handle``): start its workflow."""
        request = parse_start(body)
        workflow_id = None
        if message_id:
            workflow_id = str(uuid.uuid5(_AMQP_NAMESPACE, str(message_id)))
        state, _ = self.service.start(
            request.name,
            dict(request.input_data),
            workflow_id=workflow_id,
            idempotency_key=request.idempotency_key,
            priority=request.priority,
            attributes=request.attributes,
        )
        return f"started {state.name} {state.id} from a start message"

    def _again(
        self, channel: Any, method: Any, properties: Any, body: bytes, deliveries: int, reason: str, *, pause_s: float
    ) -> None:
        """Deliver the message again later (a counted copy at the back of the queue),
        or dead-letter it once it has had ``max_deliveries``."""
        if deliveries >= self.max_deliveries:
            self._dead_letter(channel, properties, body, f"{reason} (gave up after {deliveries} deliveries)")
            channel.basic_ack(method.delivery_tag)
            return
        logger.warning(
            "could not handle a %s (%s); delivery %d of %d, again in %.1f s",
            self.what,
            reason,
            deliveries,
            self.max_deliveries,
            pause_s,
        )

        def requeue() -> None:
            # Publish (confirmed) before the ack: a crash in between makes a
            # duplicate, which message ids and idempotency keys absorb, never a loss.
            channel.basic_publish("", self.queue, body, _copy(properties, **{DELIVERIES_HEADER: deliveries}))
            channel.basic_ack(method.delivery_tag)

        if pause_s > 0:
            # A timer of pika's own loop: the messages behind this one go on meanwhile.
            channel.connection.call_later(pause_s, requeue)
        else:
            requeue()

    def _dead_letter(self, channel: Any, properties: Any, body: bytes, reason: str) -> None:
        reason = _printable(reason)[:_MAX_REASON_CHARS]
        logger.error("%s rejected to %s: %s (body %.200r)", self.what, self.dead_queue, reason, body)
        channel.basic_publish("", self.dead_queue, body, _copy(properties, **{ERROR_HEADER: reason}))


def _close(connection: pika.BlockingConnection) -> None:
    if connection.is_open:
        connection.close()


def _deliveries(properties: Any) -> int:
    """Deliveries of this message before this one, from its header (0 if absent or garbled)."""
    count = (properties.headers or {}).get(DELIVERIES_HEADER)
    return count if isinstance(count, int) and count >= 0 else 0


def _copy(properties: Any, **headers: Any) -> pika.BasicProperties:
    """Persistent properties for a copy of a message, with ``headers`` added."""
    return pika.BasicProperties(
        headers={**(properties.headers or {}), **headers},
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        app_id=properties.app_id,
        type=properties.type,
    )


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, FlowError) else f"{type(error).__name__}: {error}"


def _printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
