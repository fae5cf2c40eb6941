"""Starting workflows whose start message never arrived (its publish was lost after the
workflow's row was committed): each outbox pass looks for the held partitions'
workflows created more than the outbox's grace ago and never started (docs/design.md,
invariant 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from actors.workflow import Item
from flow.clock import utcnow
from flow.core.events import WorkflowStarted
from flow.core.partitions import partition_of
from flow.persistence.engine_store import EngineStore

logger = logging.getLogger(__name__)


class UnstartedStarter:
    """Delivers a start to each unstarted workflow of the held partitions (one call per pass).

    Age alone does not make a start lost: one queued behind a backlog in its partition queue
    (a flood of starts from the Dramatiq or AMQP doors, which no backlog bound sheds) waits
    longer than the grace too, and starting it here made its message, when it arrived, a
    second start decision. So a start is taken for lost only while its partition queue holds
    no message ready (``ready(partition)``: RabbitMQ's count, asked only when a pass finds
    candidates; None when unknown, as on the in-process broker, which holds nothing back).
    A queue that holds messages may hold the start: the next pass looks again."""

    def __init__(
        self,
        store: EngineStore,
        deliver: Callable[[str, int, Item], None],
        *,
        partitions: int,
        grace_s: float,
        ready: Callable[[int], int | None] = lambda partition: None,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.partitions = partitions
        self.grace = timedelta(seconds=grace_s)
        self.ready = ready

    def __repr__(self) -> str:
        return f"<UnstartedStarter grace {self.grace.total_seconds():g} s>"

    def __call__(self, held: set[int]) -> None:
        now = utcnow()
        queued: dict[int, bool] = {}  # partition -> its queue holds messages (asked once a pass)
        for workflow_id in self.store.unstarted(held, created_before=now - self.grace):
            partition = partition_of(workflow_id, self.partitions)
            if partition not in held:
                continue
            if partition not in queued:
                queued[partition] = bool(self.ready(partition))
                if queued[partition]:
                    logger.info(
                        "partition %d has unstarted workflows older than the grace and messages still queued: "
                        "their starts may be among them; looking again next pass",
                        partition,
                    )
            if not queued[partition]:
                logger.info("starting workflow %s, whose start message never arrived", workflow_id)
                self.deliver(workflow_id, partition, Item(WorkflowStarted(occurred_at=now)))
