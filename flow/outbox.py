"""The outbox: every message a committed transition owes, stored in that transition.

Invariant 2 — nothing is lost between commit and send. A transition's messages are
written to the ``outbox`` table in the same transaction as the new state. After
the commit the engine publishes them (with broker confirms) and deletes their rows
in small batches (:class:`Acks`). Whatever is still there past its ``send_after``
— the engine died before sending, the publish failed, or it is a long timer that
was never handed to the broker — is sent by the engine's outbox loop.

The same table is the timer store (invariant 7): a delay longer than
``max_broker_delay_s`` is not parked in RabbitMQ (where an unacknowledged delayed
message outlives the consumer timeout and sits in one worker's memory); its row
waits here and the loop sends it when it is due.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One owed message. Its ``id`` is also the Dramatiq message id, so a re-send is
    recognisably the same message."""

    queue_name: str
    actor_name: str
    kwargs: dict[str, Any]
    #: When the message should be handled (now, or the end of a timer).
    due_at: datetime
    #: Past this time the outbox loop (re)sends it.
    send_after: datetime
    #: Whether the engine publishes it right after the commit (else the loop does, when due).
    send_now: bool = True
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def message(self) -> dramatiq.Message[Any]:
        return dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=(),
            kwargs=self.kwargs,
            options={},
            message_id=self.id,
        )

    def delay_ms(self, now: datetime) -> int | None:
        remaining = (self.due_at - now).total_seconds()
        return int(remaining * 1000) if remaining > 0.001 else None


def plan(
    queue_name: str,
    actor_name: str,
    kwargs: dict[str, Any],
    *,
    now: datetime,
    delay_ms: int = 0,
    grace_s: float,
    max_broker_delay_s: float,
) -> Outgoing:
    """An :class:`Outgoing` due ``delay_ms`` from ``now``; long delays are held in the outbox."""
    due_at = now + timedelta(milliseconds=delay_ms)
    send_now = delay_ms <= max_broker_delay_s * 1000
    send_after = due_at + timedelta(seconds=grace_s) if send_now else due_at
    return Outgoing(queue_name, actor_name, kwargs, due_at, send_after, send_now)


def publish(broker: dramatiq.Broker, outgoing: Outgoing, *, now: datetime) -> None:
    """Publish one message (waiting for the broker's confirmation on RabbitMQ)."""
    broker.enqueue(outgoing.message(), delay=outgoing.delay_ms(now))


class Acks:
    """Deletes the outbox rows of published messages in batches, off the hot path.

    If the process dies before a batch is flushed, those messages are sent once
    more by the outbox loop: every handler is idempotent, so that costs a duplicate
    delivery, never a wrong state.
    """

    def __init__(self, delete: Any, *, every_s: float = 0.2) -> None:
        self._delete = delete
        self._every_s = every_s
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="flow-outbox-acks", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            ids, self._pending = self._pending, []
        if not ids:
            return
        try:
            self._delete(ids)
        except Exception:
            # Rows left behind are re-sent later; that is a duplicate, not a loss.
            logger.warning("could not delete %d sent outbox rows; they will be sent again", len(ids), exc_info=True)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._every_s)
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
