"""The outbox's record of one owed message (:mod:`flow.engine.outbox` plans them, the
group commit stores them with the transition that owes them, the engine sends them)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq

from flow.core.pools import broker_priority
from flow.wire.messages import Message


def new_id() -> str:
    """A message id: 128 random bits as 32 hex digits, like ``uuid4().hex``.

    Not ``uuid4``: it reads ``os.urandom``, a system call that releases the GIL, and an
    engine thread that lets go of the GIL in the middle of a transition waits for it
    behind the other threads (py-spy put ``uuid4`` at 39% of building a transition on a
    busy engine). The ids need to be unique, not secret; ``random`` is seeded from the
    OS and reseeded in a forked child, so two processes never share a sequence.
    """
    return f"{random.getrandbits(128):032x}"


@dataclass(frozen=True)
class Outgoing:
    """One owed message. Its ``id`` is also the Dramatiq message id, so a re-send is
    recognisably the same message."""

    queue_name: str
    actor_name: str
    kwargs: dict[str, Any]
    #: The partition of the workflow it is about: its engine re-sends it if need be.
    partition: int
    #: Past this time the partition's engine (re)sends it.
    send_after: datetime
    id: str = field(default_factory=new_id)
    #: An attempt's workflow priority, 1 (first) to 5 (last): RabbitMQ delivers the
    #: messages of a pool's queue by it (:func:`flow.core.pools.broker_priority`). None: none.
    priority: int | None = None

    @classmethod
    def of(
        cls, message: Message, queue_name: str, *, partition: int, send_after: datetime, priority: int | None = None
    ) -> Outgoing:
        return cls(queue_name, message.ACTOR, message.to_kwargs(), partition, send_after, priority=priority)

    def message(self) -> dramatiq.Message[Any]:
        return dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=(),
            kwargs=self.kwargs,
            # Dramatiq publishes a message it sends again (a worker's retry, through the delay
            # queue) with the priority its options name, not the one it was received with.
            options={} if self.priority is None else {"broker_priority": broker_priority(self.priority)},
            message_id=self.id,
        )

    @property
    def workflow_id(self) -> str | None:
        return self.kwargs.get("workflow_id")
