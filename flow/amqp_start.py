"""The seed's start message: a plain JSON body on RabbitMQ, consumed by the engine.

Publish ``{"name": "DummyWorkflow", "input_data": {...}}`` (optionally with
``"idempotency_key"``) to exchange ``start_workflow`` with routing key
``workflow_starter``. The project declares the exchange (direct, durable), the queue
``<prefix>.workflow_starter`` bound to it, and its dead-letter queue
``<prefix>.workflow_starter.dead``.

A message that is not such a JSON object, or names an unknown workflow, is moved to
the dead-letter queue with the reason in its ``x-flow-error`` header and in the log;
it never stops the consumer or the messages behind it. A database outage puts the
message back (after a pause) to be tried again. With the AMQP ``message_id``
property set, a redelivered message starts its workflow only once.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from flow.errors import DefinitionNotFound, InvalidInput

if TYPE_CHECKING:
    from flow.service import WorkflowService

logger = logging.getLogger(__name__)

#: Namespace of workflow ids derived from AMQP message ids.
_AMQP_NAMESPACE = uuid.UUID("5d1f6a4e-8c0b-4f63-9a51-2f0c3b7e9d10")
ALLOWED_FIELDS = frozenset({"name", "input_data", "idempotency_key"})


class BadStartMessage(Exception):
    """The body cannot start a workflow; the message is dead-lettered."""


def parse_start(body: bytes) -> dict[str, Any]:
    """The start request in ``body``, or :class:`BadStartMessage` saying what is wrong."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadStartMessage(f"the body is not JSON: {e}") from e
    if not isinstance(request, dict):
        raise BadStartMessage('the body must be a JSON object like {"name": ..., "input_data": {...}}')
    unknown = sorted(set(request) - ALLOWED_FIELDS)
    if unknown:
        raise BadStartMessage(f"$.{unknown[0]}: unknown field; allowed: {', '.join(sorted(ALLOWED_FIELDS))}")
    if not isinstance(request.get("name"), str) or not request["name"]:
        raise BadStartMessage("$.name: required, the name of a workflow definition")
    if not isinstance(request.get("input_data", {}), dict):
        raise BadStartMessage("$.input_data: must be a JSON object")
    key = request.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        raise BadStartMessage("$.idempotency_key: must be a string of 1 to 255 characters")
    return request


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
        retry_pause_s: float = 2.0,
    ) -> None:
        self.service = service
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key
        self.queue = queue
        self.dead_queue = f"{queue}.dead"
        self.retry_pause_s = retry_pause_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: pika.BlockingConnection | None = None

    def __repr__(self) -> str:
        return f"<StartMessageConsumer {self.exchange}/{self.routing_key} -> {self.queue}>"

    def declare(self, channel: Any) -> None:
        """Declare the exchange, the queue, its binding and the dead-letter queue (durable)."""
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        channel.queue_declare(self.dead_queue, durable=True)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, self.exchange, routing_key=self.routing_key)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-amqp-start", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        connection = self._connection
        if connection is not None and connection.is_open:
            try:
                connection.add_callback_threadsafe(connection.close)
            except Exception:  # already closing
                pass
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
                channel = self._connection.channel()
                channel.confirm_delivery()
                self.declare(channel)
                channel.basic_qos(prefetch_count=8)
                channel.basic_consume(self.queue, self._on_message)
                logger.info("consuming start messages from %s", self.queue)
                channel.start_consuming()
            except pika.exceptions.AMQPError as e:
                if self._stopping.is_set():
                    return
                logger.warning("start-message consumer lost RabbitMQ (%s); reconnecting", e)
                self._stopping.wait(self.retry_pause_s)
            except Exception:
                logger.exception("start-message consumer failed; restarting it")
                self._stopping.wait(self.retry_pause_s)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            request = parse_start(body)
            workflow_id = None
            if properties.message_id:
                workflow_id = str(uuid.uuid5(_AMQP_NAMESPACE, str(properties.message_id)))
            state, _ = self.service.start(
                request["name"],
                request.get("input_data", {}),
                workflow_id=workflow_id,
                idempotency_key=request.get("idempotency_key"),
            )
            logger.info("started %s %s from a start message", state.name, state.id)
        except (BadStartMessage, DefinitionNotFound, InvalidInput) as e:
            self._dead_letter(channel, properties, body, str(e))
            channel.basic_ack(method.delivery_tag)
            return
        except Exception as e:
            # Not the message's fault (database or broker trouble): try it again later.
            logger.warning("could not start a workflow from a start message (%s); it will be retried", e)
            self._stopping.wait(self.retry_pause_s)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        channel.basic_ack(method.delivery_tag)

    def _dead_letter(self, channel: Any, properties: Any, body: bytes, reason: str) -> None:
        logger.error("start message rejected to %s: %s (body %.200r)", self.dead_queue, reason, body)
        headers = dict(properties.headers or {})
        headers["x-flow-error"] = reason
        channel.basic_publish(
            "",
            self.dead_queue,
            body,
            pika.BasicProperties(
                headers=headers,
                delivery_mode=pika.DeliveryMode.Persistent,
                content_type=properties.content_type,
                message_id=properties.message_id,
            ),
        )
