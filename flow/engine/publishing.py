"""The engine's publishing channel (:mod:`flow.engine.rabbit`): in confirm mode, a batch
published at once and settled when RabbitMQ has confirmed (or refused) each of its
messages (:mod:`flow.engine.confirms`). Queues are declared on it before their first
publish or consume (:mod:`flow.engine.declaring`).

While RabbitMQ blocks the connection (``blocked``: a memory or disk alarm), a batch is
not published into pika's buffer but failed at once: it stays in the outbox. Only the
connection's I/O thread calls these, but for ``blocked`` and ``confirms``' length, which
other threads read.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pika

from flow.core.pools import broker_priority
from flow.engine.confirms import Batch, Confirms
from flow.engine.declaring import Declarations
from flow.engine.transport import OnPublished
from flow.wire.messages import CANCEL_ATTEMPT
from flow.wire.outgoing import Outgoing

logger = logging.getLogger(__name__)


class Publisher:
    """The publishing channel of one connection at a time (see the module docstring)."""

    def __init__(self, declarations: Declarations) -> None:
        self.declarations = declarations
        self.confirms = Confirms()
        #: The open channel in confirm mode; None between connections.
        self.channel: Any = None
        #: Does RabbitMQ block the connection's publishes (a memory or disk alarm)?
        self.blocked = False

    def __repr__(self) -> str:
        return f"<Publisher open={self.channel is not None} blocked={self.blocked} {self.confirms!r}>"

    def opened(self, channel: Any, on_closed: Callable[[Any, BaseException], None], then: Callable[[], None]) -> None:
        """A new connection's publishing channel: put it in confirm mode, then ``then()``."""
        self.channel = channel
        channel.add_on_close_callback(on_closed)
        channel.add_on_return_callback(self._on_return)
        self.confirms.new_channel()
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: then())

    def lost(self) -> None:
        """The connection closed: nothing is declared on the next one yet, and nothing
        unconfirmed will be confirmed now (those batches settle as failed)."""
        self.blocked = False
        self.channel = None
        self.declarations.forget()
        self.confirms.fail_all()

    def declare(self, queue: str, then: Callable[[], None]) -> None:
        """Declare ``queue`` (once per connection), then ``then()``."""
        if self.channel is None:
            then()
        else:
            self.declarations.queue(self.channel, queue, then)

    def count(self, queue: str, counted: Callable[[Any], None]) -> None:
        """Ask RabbitMQ how many messages ``queue`` holds ready (a passive declare)."""
        if self.channel is not None and self.channel.is_open:
            self.channel.queue_declare(queue, passive=True, callback=counted)

    def publish(self, messages: list[Outgoing], on_done: OnPublished) -> None:
        """Publish ``messages``, each once its queue is declared; ``on_done(confirmed,
        failed)`` once each of them is settled."""
        batch = Batch(on_done, len(messages), [], [])
        for outgoing in messages:
            if self.channel is None or not self.channel.is_open or self.blocked:
                batch.settle(outgoing.id, False)
                continue
            if outgoing.actor_name == CANCEL_ATTEMPT:
                # A notice to every worker: its "queue" is the fanout exchange they bind to.
                notice = functools.partial(self._publish_one, outgoing, batch)
                self.declarations.fanout(self.channel, outgoing.queue_name, notice)
                continue
            self.declare(outgoing.queue_name, functools.partial(self._publish_one, outgoing, batch))

    def _publish_one(self, outgoing: Outgoing, batch: Batch) -> None:
        channel = self.channel
        if channel is None or not channel.is_open:
            batch.settle(outgoing.id, False)
            return
        notice = outgoing.actor_name == CANCEL_ATTEMPT
        channel.basic_publish(
            outgoing.queue_name if notice else "",
            "" if notice else outgoing.queue_name,
            outgoing.message().encode(),
            # A notice with no worker listening is no loss: not mandatory, not persistent.
            pika.BasicProperties(
                delivery_mode=1 if notice else 2,
                message_id=outgoing.id,
                priority=None if outgoing.priority is None else broker_priority(outgoing.priority),
            ),
            mandatory=not notice,
        )
        self.confirms.sent(outgoing.id, batch)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # Unroutable (its queue is gone): the confirm that follows must count as a failure.
        logger.error("RabbitMQ returned a message for %s: %s", method.routing_key, method.reply_text)
        if properties.message_id:
            self.confirms.returned(properties.message_id)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        self.confirms.confirm(method.delivery_tag, multiple=method.multiple, ok=isinstance(method, pika.spec.Basic.Ack))


__all__ = ["Publisher"]
