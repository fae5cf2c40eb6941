"""How an engine talks to the broker: the contract (consume its partitions' queues,
settle deliveries, publish with batched confirms) and what the two transports share.

:class:`flow.engine.rabbit.RabbitTransport` keeps it on RabbitMQ,
:class:`flow.process.inprocess.InProcessTransport` inside one process over the
embedded mode's broker.

Queues are declared exactly as Dramatiq declares its own (``Q``, ``Q.DQ``, ``Q.XQ``
with the same arguments), so a Dramatiq process can publish to a partition queue
(workers report results there) and a delivery the engine rejects lands in ``Q.XQ``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dramatiq.common import xq_name

from flow.core.pools import MAX_PRIORITY, PRIORITY_ARGUMENT
from flow.wire.outgoing import Outgoing

logger = logging.getLogger(__name__)

#: How long Dramatiq keeps dead letters (its own constant: ``Q.XQ`` must be declared alike).
DEAD_MESSAGE_TTL_MS = 86_400_000 * 7

#: ``on_done(confirmed_ids, failed_ids)`` once every message of a publish call is settled.
OnPublished = Callable[[list[str], list[str]], None]


@dataclass(frozen=True)
class Delivery:
    """One message handed to the engine, to be settled (acknowledged or returned) once."""

    queue: str
    tag: int
    #: The channel's generation: after a reconnect, older tags mean nothing.
    generation: int
    body: bytes
    redelivered: bool = False


class Transport(Protocol):
    def start(self, on_delivery: Callable[[Delivery], None], on_ready: Callable[[], None]) -> None: ...
    def stop(self) -> None: ...
    def subscribe(self, queue: str) -> None: ...
    def unsubscribe(self, queue: str) -> None: ...
    def settle(self, deliveries: list[Delivery], *, ack: bool, requeue: bool = True) -> None: ...
    def publish(self, messages: list[Outgoing], on_done: OnPublished) -> None: ...
    @property
    def connected(self) -> bool:
        """Can it publish now (connected, and not blocked by the broker)?"""
        ...


def dramatiq_queue_arguments(queue: str) -> dict[str, Any]:
    """The arguments Dramatiq declares ``queue`` (and its delay queue) with."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue)}


def queue_arguments(queue: str, *, priorities: bool) -> dict[str, Any]:
    """The arguments ``queue`` is declared with: Dramatiq's, and for a worker pool's queue
    (``priorities``) RabbitMQ's ``x-max-priority``, so that its messages are delivered by
    their workflow's priority. Its delay queue keeps Dramatiq's own (nothing is delayed there)."""
    arguments = dramatiq_queue_arguments(queue)
    return {**arguments, PRIORITY_ARGUMENT: MAX_PRIORITY} if priorities else arguments


#: RabbitMQ's refusal to declare a queue with ``x-max-priority`` where it exists without
#: (406). One that exists with other levels ("but current is '10'") is not such a queue:
#: declared again without priorities, it would be refused too.
_INEQUIVALENT = re.compile(
    r"inequivalent arg '" + re.escape(PRIORITY_ARGUMENT) + r"' for queue '([^']+)'.*: received .* but current is none\Z"
)


def fifo_queue_refused(reason: BaseException) -> str | None:
    """The queue named by a channel closed because it exists without ``x-max-priority``
    (declared by a release before priorities), or None for any other reason."""
    if getattr(reason, "reply_code", None) != 406:
        return None
    found = _INEQUIVALENT.search(str(getattr(reason, "reply_text", "")))
    return found.group(1) if found else None


#: What is logged once per process and queue that stays first-in first-out.
FIFO_WARNING = (
    "queue %s was declared by an earlier release without x-max-priority: its attempts run "
    "first in, first out, whatever their priority, until it is declared again "
    '(README, "Worker pools": upgrading a queue to priorities)'
)
