"""Settling what will not be committed: items handed back to be tried again, rejected
for good, or dropped because their workflow does not exist; and failing a workflow the
engine cannot handle (docs/design.md, invariant 10).

Every path that does not end in a commit goes through here, so that no delivery is
left unacknowledged and no fired timer is left marked as firing.
"""

from __future__ import annotations

import logging

from actors.workflow import Item
from flow.engine.spans import WorkflowSpans
from flow.engine.timers import TimerWheel
from flow.engine.transport import Delivery, Transport
from flow.persistence.engine_store import EngineStore

logger = logging.getLogger(__name__)


class Settler:
    """Settles deliveries and timers that no commit will settle (see the module docstring)."""

    def __init__(
        self, store: EngineStore, transport: Transport, timers: TimerWheel, spans: WorkflowSpans, *, engine_id: str
    ) -> None:
        self.store = store
        self.transport = transport
        self.timers = timers
        self.spans = spans
        self.engine_id = engine_id

    def __repr__(self) -> str:
        return f"<Settler of engine {self.engine_id}>"

    def give_back(self, items: list[Item]) -> None:
        """Hand items back to be tried again (deliveries requeued, timers fire again)."""
        self.transport.settle([i.delivery for i in items if i.delivery is not None], ack=False, requeue=True)
        self.timers.unfired([i.timer_id for i in items if i.timer_id])

    def reject(self, items: list[Item], reason: str) -> None:
        """Items that can never be handled: dead-letter the deliveries, drop the timers."""
        deliveries = [i.delivery for i in items if i.delivery is not None]
        if deliveries:
            logger.error("dead-lettering %d message(s): %s", len(deliveries), reason)
        self.transport.settle(deliveries, ack=False, requeue=False)
        self.forget_timers([i.timer_id for i in items if i.timer_id])

    def drop(self, items: list[Item], reason: str) -> None:
        """Items for a workflow that does not exist (deleted, or never created): there is
        nothing to decide on, so the deliveries are acknowledged, not dead-lettered (a late
        result for a deleted workflow is normal), and the timers forgotten."""
        self.drop_settled(
            [i.delivery for i in items if i.delivery is not None], [i.timer_id for i in items if i.timer_id], reason
        )

    def drop_settled(self, deliveries: list[Delivery], timer_ids: list[str], reason: str) -> None:
        """:meth:`drop` for what a refused transition carried."""
        if deliveries or timer_ids:
            logger.info("dropping %d message(s) and %d timer(s): %s", len(deliveries), len(timer_ids), reason)
        self.transport.settle(deliveries, ack=True)
        self.forget_timers(timer_ids)

    def forget_timers(self, timer_ids: list[str]) -> None:
        if timer_ids:
            self.timers.forget(timer_ids)
            try:
                self.store.delete_timers(timer_ids)
            except Exception as e:
                logger.warning("could not delete timers %s: %s", timer_ids, e)

    def fail_workflow(self, workflow_id: str, epoch: int, reason: str) -> None:
        """Mark the workflow failed with ``reason``, fenced by ``epoch``."""
        try:
            if self.store.fail_unreadable(workflow_id, epoch=epoch, owner=self.engine_id, reason=reason):
                self.spans.failed(workflow_id, reason)
        except Exception as e:
            logger.error("could not mark workflow %s failed: %s", workflow_id, e)
