"""The partitions this engine holds coming and going (called by the lease loop,
:mod:`flow.engine.leases`): a partition acquired is caught up (what its previous owner
committed but may not have sent; on the in-process broker, what its workflows are
owed), its due-soon timers armed and its queue consumed; a partition released or lost
stops being consumed, its actors stop (their unhandled items handed back), its timers
and spans are let go."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from actors.registry import WorkflowActors
from flow.core.partitions import partition_queue
from flow.engine.outbox import OutboxSender
from flow.engine.recovery import Recovery
from flow.engine.settling import Settler
from flow.engine.spans import WorkflowSpans
from flow.engine.timers import TimerWheel
from flow.engine.transport import Transport

logger = logging.getLogger(__name__)


class Holding:
    """The lease loop's callbacks: :meth:`acquired`, :meth:`released`, :meth:`lost`, and
    :meth:`broker_ok` (an engine cut off from its broker lets its leases lapse)."""

    def __init__(
        self,
        transport: Transport,
        actors: WorkflowActors,
        timers: TimerWheel,
        outbox: OutboxSender,
        settler: Settler,
        spans: WorkflowSpans,
        *,
        prefix: str,
        lease_s: float,
        recovery: Recovery | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.actors = actors
        self.timers = timers
        self.outbox = outbox
        self.settler = settler
        self.spans = spans
        self.prefix = prefix
        self.lease_s = lease_s
        #: Set for the in-process broker, which loses every message with its process.
        self.recovery = recovery
        self.clock = clock

    def __repr__(self) -> str:
        return f"<Holding {self.prefix} recover={self.recovery is not None}>"

    def acquired(self, partition: int, epoch: int) -> None:
        if self.recovery is not None:
            self.recovery.recover(partition)
        else:
            self.outbox.send_all(partition)  # what the previous owner committed but may not have sent
        self.timers.load({partition})
        self.transport.subscribe(partition_queue(self.prefix, partition))

    def released(self, partition: int, within_s: float) -> None:
        """Let ``partition`` go, waiting up to ``within_s`` for the confirms of what was sent
        (rows confirmed are deleted; the others its next owner sends again)."""
        self._let_go(partition)
        self.outbox.flush(within_s)

    def lost(self, partition: int) -> None:
        self._let_go(partition)

    def broker_ok(self) -> bool:
        since = getattr(self.transport, "disconnected_since", None)
        return since is None or self.clock() - since < self.lease_s

    def _let_go(self, partition: int) -> None:
        self.transport.unsubscribe(partition_queue(self.prefix, partition))
        self.settler.give_back(self.actors.evict(partition))
        self.timers.drop(partition)
        self.spans.let_go(partition)
