"""What happens after a group commit, in the committer's thread: the committed
transitions' deliveries are acknowledged, their timers armed (and the fired ones
forgotten), what they owe published; the refused ones' deliveries go back to the queue
for the partition's owner (docs/design.md, "Partitions, leases and fencing").

Nothing is acknowledged or sent before this point: that is invariant 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flow.clock import utcnow
from flow.engine.outbox import OutboxSender
from flow.engine.settling import Settler
from flow.engine.timers import TimerWheel
from flow.engine.transport import Transport
from flow.faults import FaultInjector
from flow.observability.metrics import EngineMetrics
from flow.persistence.records import Transition

logger = logging.getLogger(__name__)


class AfterCommit:
    """The committer's callbacks: :meth:`committed` and :meth:`refused`."""

    def __init__(
        self,
        transport: Transport,
        timers: TimerWheel,
        outbox: OutboxSender,
        settler: Settler,
        metrics: EngineMetrics,
        *,
        faults: FaultInjector | None = None,
        then: Callable[[list[Transition]], None] | None = None,
    ) -> None:
        self.transport = transport
        self.timers = timers
        self.outbox = outbox
        self.settler = settler
        self.metrics = metrics
        self.faults = faults
        #: Told of every committed batch last (the admission loop: a slot may be free).
        self.then = then
        #: Transitions refused by the fence so far (0 in normal operation; in the engine's heartbeat).
        self.refused_commits = 0

    def __repr__(self) -> str:
        return f"<AfterCommit refused={self.refused_commits}>"

    def committed(self, transitions: list[Transition]) -> None:
        self.transport.settle([d for t in transitions for d in t.deliveries], ack=True)
        # A fired timer that its handling set again (a heartbeat timer racing a
        # heartbeat) is forgotten as fired, then armed anew.
        self.timers.forget([tid for t in transitions for tid in (*t.timers_deleted, *t.fired_timers)])
        self.timers.arm([row for t in transitions for row in t.timers_set])
        owed_messages = [o for t in transitions for o in t.owed]
        if owed_messages and self.faults is not None:
            self.faults.maybe("after-commit")
        self.outbox.publish(owed_messages)
        for t in transitions:
            self.metrics.observe_decision((utcnow() - t.updated_at).total_seconds())
        if self.then is not None:
            self.then(transitions)

    def refused(self, refused: list[tuple[Transition, str]]) -> None:
        deleted = [t for t, why in refused if why == "deleted"]
        for transition in deleted:
            # A late message for a workflow deleted under its actor: nothing is wrong.
            self.settler.drop_settled(
                transition.deliveries, transition.fired_timers, f"workflow {transition.workflow_id} was deleted"
            )
        refused = [(t, why) for t, why in refused if why != "deleted"]
        self.refused_commits += len(refused)
        self.metrics.observe_refused(len(refused))
        for transition, why in refused:
            logger.warning("commit of workflow %s refused (%s)", transition.workflow_id, why)
            self.transport.settle(transition.deliveries, ack=False, requeue=True)
            self.timers.unfired(transition.fired_timers)
