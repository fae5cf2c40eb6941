"""What the engine's RabbitMQ connection declares, and how (:mod:`flow.engine.rabbit`).

Each queue as Dramatiq declares its own (``Q``, ``Q.DQ``, ``Q.XQ`` with the same arguments),
so a Dramatiq process can publish to a partition queue and a rejected delivery lands in
``Q.XQ``; a worker pool's queue with priorities, unless a release before priorities declared
it without (RabbitMQ refuses a declare with other arguments: 406), which is then used first in,
first out; the workers' cancel notices' fanout exchange. Declared once per connection, on the
publishing channel, from its I/O thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dramatiq.common import dq_name, xq_name

from flow.core.pools import pool_of
from flow.engine.transport import (
    DEAD_MESSAGE_TTL_MS,
    FIFO_WARNING,
    dramatiq_queue_arguments,
    fifo_queue_refused,
    queue_arguments,
)

logger = logging.getLogger(__name__)


class Declarations:
    """The queues and exchanges declared on the current connection (see the module docstring)."""

    def __init__(self, activity_queue: str | None) -> None:
        #: The default pool's queue: it and every pool's queue beside it take priorities.
        self.activity_queue = activity_queue
        #: Pool queues an earlier release declared without priorities (kept as they are).
        self.fifo_queues: set[str] = set()
        self._declared: set[str] = set()

    def __repr__(self) -> str:
        return f"<Declarations {len(self._declared)} declared, fifo {sorted(self.fifo_queues)}>"

    def forget(self) -> None:
        """The connection is gone: the next one declares everything again."""
        self._declared.clear()

    def refused(self, reason: BaseException) -> None:
        """A channel closed by RabbitMQ: if it refused a pool's queue from before priorities,
        use that queue as it is from now on, its attempts in the order they came."""
        fifo = fifo_queue_refused(reason)
        if fifo is not None and fifo not in self.fifo_queues:
            logger.warning(FIFO_WARNING, fifo)
            self.fifo_queues.add(fifo)

    def takes_priorities(self, queue: str) -> bool:
        """Whether ``queue`` is declared with priorities: a worker pool's, unless an earlier
        release declared it without."""
        if self.activity_queue is None or queue in self.fifo_queues:
            return False
        return pool_of(self.activity_queue, queue) is not None

    def queue(self, channel: Any, queue: str, then: Callable[[], None]) -> None:
        """Declare ``queue`` as Dramatiq does (``Q``, ``Q.DQ``, ``Q.XQ``), then ``then()``."""
        if queue in self._declared:
            then()
            return
        arguments = dramatiq_queue_arguments(queue)
        own = queue_arguments(queue, priorities=self.takes_priorities(queue))

        def done(_frame: Any) -> None:
            self._declared.add(queue)
            then()

        channel.queue_declare(
            xq_name(queue),
            durable=True,
            arguments={"x-message-ttl": DEAD_MESSAGE_TTL_MS},
            callback=lambda _f: channel.queue_declare(
                dq_name(queue),
                durable=True,
                arguments=arguments,
                callback=lambda _f2: channel.queue_declare(queue, durable=True, arguments=own, callback=done),
            ),
        )

    def fanout(self, channel: Any, exchange: str, then: Callable[[], None]) -> None:
        """Declare the fanout ``exchange`` (the workers' cancel notices), then ``then()``."""
        if exchange in self._declared:
            then()
            return

        def done(_frame: Any) -> None:
            self._declared.add(exchange)
            then()

        channel.exchange_declare(exchange, exchange_type="fanout", durable=True, callback=done)
