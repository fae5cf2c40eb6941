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
    """Delivers a start to each unstarted workflow of the held partitions (one call per pass)."""

    def __init__(
        self,
        store: EngineStore,
        deliver: Callable[[str, int, Item], None],
        *,
        partitions: int,
        grace_s: float,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.partitions = partitions
        self.grace = timedelta(seconds=grace_s)

    def __repr__(self) -> str:
        return f"<UnstartedStarter grace {self.grace.total_seconds():g} s>"

    def __call__(self, held: set[int]) -> None:
        now = utcnow()
        for workflow_id in self.store.unstarted(held, created_before=now - self.grace):
            partition = partition_of(workflow_id, self.partitions)
            if partition in held:
                logger.info("starting workflow %s, whose start message never arrived", workflow_id)
                self.deliver(workflow_id, partition, Item(WorkflowStarted(occurred_at=now)))
