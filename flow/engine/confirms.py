"""The engine's publishes waiting for RabbitMQ's confirms (:mod:`flow.engine.rabbit`).

A publishing channel in confirm mode numbers its publishes 1, 2, 3...; RabbitMQ confirms
them (``basic.ack``) or not (``basic.nack``), one by one or up to a tag (``multiple``). A
batch of publishes is settled once each of its messages is: confirmed, or failed (nacked,
returned as unroutable, or its connection lost). Only the I/O thread calls these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flow.engine.transport import OnPublished

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """The messages of one :meth:`~flow.engine.rabbit.RabbitTransport.publish`, settled together."""

    on_done: OnPublished
    remaining: int
    confirmed: list[str]
    failed: list[str]

    def settle(self, outgoing_id: str, ok: bool) -> None:
        (self.confirmed if ok else self.failed).append(outgoing_id)
        self.remaining -= 1
        if self.remaining == 0:
            try:
                self.on_done(self.confirmed, self.failed)
            except Exception:
                logger.exception("publish callback failed")


class Confirms:
    """The publishes of the current channel not yet confirmed, by delivery tag."""

    def __init__(self) -> None:
        self._unconfirmed: dict[int, tuple[str, Batch]] = {}
        self._returned: set[str] = set()
        self._next_tag = 0

    def __len__(self) -> int:
        return len(self._unconfirmed)

    def __repr__(self) -> str:
        return f"<Confirms {len(self._unconfirmed)} unconfirmed>"

    def new_channel(self) -> None:
        """A channel in confirm mode: its delivery tags start again from 1."""
        self._next_tag = 0

    def sent(self, outgoing_id: str, batch: Batch) -> None:
        self._next_tag += 1
        self._unconfirmed[self._next_tag] = (outgoing_id, batch)

    def returned(self, message_id: str) -> None:
        """Unroutable (its queue is gone): the confirm that follows counts as a failure."""
        self._returned.add(message_id)

    def confirm(self, delivery_tag: int, *, multiple: bool, ok: bool) -> None:
        tags = [t for t in self._unconfirmed if t <= delivery_tag] if multiple else [delivery_tag]
        for tag in sorted(tags):
            entry = self._unconfirmed.pop(tag, None)
            if entry is None:
                continue
            outgoing_id, batch = entry
            returned = outgoing_id in self._returned
            self._returned.discard(outgoing_id)
            batch.settle(outgoing_id, ok and not returned)

    def fail_all(self) -> None:
        """The connection is lost: nothing unconfirmed will be confirmed now."""
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        self._returned.clear()
        for outgoing_id, batch in unconfirmed.values():
            batch.settle(outgoing_id, False)
