"""Reading what arrives on a partition queue: a Dramatiq message about one workflow,
turned into the event it reports, and handed to the workflow's actor (:class:`Inbound`,
which also turns a fired timer into its event).

The message classes of :mod:`flow.wire.messages` say what each message holds; this module
only frames them. Whatever cannot be read — not JSON, not a Dramatiq message, an
unknown actor, a missing or unknown field, a field of the wrong type, a version from
a newer release — raises :class:`PoisonMessage`, and the engine dead-letters it at
once (``<queue>.XQ``) with the reason in its log: trying again could only fail again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from actors.workflow import Item
from flow.clock import utcnow
from flow.core.events import Event, TimerFired
from flow.core.partitions import partition_of, queue_partition
from flow.core.vocabulary import TimerKind
from flow.engine.transport import Delivery, Transport
from flow.errors import FlowError, InvalidInput
from flow.persistence.records import TimerRow
from flow.wire import messages

logger = logging.getLogger(__name__)


class PoisonMessage(FlowError):
    """Raised when a message on an engine queue can never be handled; it is dead-lettered."""


def decode(body: bytes, *, now: datetime) -> tuple[str, Event]:
    """``(workflow_id, event)`` from a Dramatiq message body."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise PoisonMessage(f"not a JSON Dramatiq message: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kwargs"), dict):
        raise PoisonMessage("not a Dramatiq message with keyword arguments")
    if message.get("args"):
        raise PoisonMessage("engine messages take keyword arguments only")
    return event_of(message.get("actor_name"), message["kwargs"], now=now)


def event_of(actor_name: Any, kwargs: Mapping[str, Any], *, now: datetime) -> tuple[str, Event]:
    """``(workflow_id, event)`` from an engine message's actor name and arguments."""
    message_type = messages.ENGINE_MESSAGES.get(actor_name) if isinstance(actor_name, str) else None
    if message_type is None:
        raise PoisonMessage(f"{actor_name!r} is not an engine message")
    try:
        message = message_type.from_kwargs(kwargs)
        return message.workflow_id, message.to_event(now)  # a rerun's definition is read here
    except InvalidInput as e:
        raise PoisonMessage(f"{actor_name}: {e}") from None


class Inbound:
    """Events in: deliveries from the held partitions' queues and fired timers, each
    handed to its workflow's actor through ``deliver``."""

    def __init__(
        self,
        transport: Transport,
        deliver: Callable[[str, int, Item], None],
        *,
        held: Mapping[int, int],
        prefix: str,
        partitions: int,
    ) -> None:
        self.transport = transport
        self.deliver = deliver
        self.held = held
        self.prefix = prefix
        self.partitions = partitions

    def __repr__(self) -> str:
        return f"<Inbound {self.prefix} partitions={self.partitions}>"

    def on_delivery(self, delivery: Delivery) -> None:
        """A message from a partition queue (the transport's I/O thread: no blocking here)."""
        partition = queue_partition(self.prefix, delivery.queue)
        if partition is None or partition not in self.held:
            self.transport.settle([delivery], ack=False, requeue=True)
            return
        try:
            workflow_id, event = decode(delivery.body, now=utcnow())
            if partition_of(workflow_id, self.partitions) != partition:
                raise PoisonMessage(
                    f"workflow {workflow_id} belongs to partition {partition_of(workflow_id, self.partitions)}"
                )
        except PoisonMessage as e:
            logger.error("dead-lettering a message from %s: %s (body %.200r)", delivery.queue, e, delivery.body)
            self.transport.settle([delivery], ack=False, requeue=False)
            return
        self.deliver(workflow_id, partition, Item(event, delivery))

    def fire(self, row: TimerRow) -> None:
        """A timer came due (the timer thread)."""
        event = TimerFired(TimerKind(row.kind), row.position, row.attempt, occurred_at=utcnow())
        self.deliver(row.workflow_id, row.partition, Item(event, timer_id=row.id))
