"""Recovery on the in-process broker, which loses every message with its process: when
the embedded engine takes a partition, each unfinished workflow is sent what
:func:`flow.core.recovery.owed` says it is owed — its start, the run of every attempt
in flight, its timers (docs/design.md, "Recovery") — and each attempt an ended workflow
still had in flight (told to stop, its worker gone with the process) is ended. A workflow it cannot resume fails
with the reason; the others go on (invariant 10)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from actors.workflow import Item
from flow.clock import utcnow
from flow.core.events import ActivityCompleted, WorkflowStarted
from flow.core.recovery import owed
from flow.core.state import WorkflowState
from flow.core.vocabulary import Outcome
from flow.engine.planning import Routes, run_message
from flow.engine.settling import Settler
from flow.engine.transport import Transport
from flow.persistence.engine_store import EngineStore
from flow.persistence.records import TimerRow, Unreadable, timer_id

logger = logging.getLogger(__name__)


class Recovery:
    """Resumes a just-acquired partition's unfinished workflows (see the module docstring)."""

    def __init__(
        self,
        store: EngineStore,
        transport: Transport,
        settler: Settler,
        *,
        deliver: Callable[[str, int, Item], None],
        routes: Callable[[int], Routes],
        epoch_of: Callable[[int], int | None],
    ) -> None:
        self.store = store
        self.transport = transport
        self.settler = settler
        self.deliver = deliver
        self.routes = routes
        self.epoch_of = epoch_of

    def __repr__(self) -> str:
        return "<Recovery>"

    def recover(self, partition: int) -> None:
        """The in-process broker lost every message: send what each workflow is owed."""
        self.store.delete_partition_outbox(partition)
        now = utcnow()
        count = 0
        for state in self.store.unfinished(partition):
            count += 1
            try:
                if isinstance(state, Unreadable):
                    raise ValueError(state.reason)
                self.resume(state, partition, now)
            except Exception as e:
                # One workflow the engine cannot handle must not stop it (docs/design.md, invariant 10).
                workflow_id = state.workflow_id if isinstance(state, Unreadable) else state.id
                reason = f"the engine cannot resume this workflow: {type(e).__name__}: {e}"
                logger.error("workflow %s: %s", workflow_id, reason)
                epoch = self.epoch_of(partition)
                self.settler.fail_workflow(workflow_id, -1 if epoch is None else epoch, reason)
        if count:
            logger.warning("resumed %d unfinished workflows of partition %d", count, partition)
        self.end_lost_attempts(partition, now)

    def end_lost_attempts(self, partition: int, now: datetime) -> None:
        """An ended workflow's attempt still in flight was told to stop, but its worker died
        with the process before it reported: nothing would ever end it (and it would hold
        its concurrency limit's slot for good). Its result is what the process's end made
        of it: a failure, recorded late on the step."""
        lost = self.store.lost_attempts(partition)
        for workflow_id, position, attempt in lost:
            error = "the attempt was lost: its worker ended with the process before it reported"
            event = ActivityCompleted(position, attempt, Outcome.TEMPORARY_FAILURE, now, error=error)
            self.deliver(workflow_id, partition, Item(event))
        if lost:
            logger.warning("ended %d lost attempts of ended workflows of partition %d", len(lost), partition)

    def resume(self, state: WorkflowState, partition: int, now: datetime) -> None:
        due = owed(state)
        if due.start:
            self.deliver(state.id, partition, Item(WorkflowStarted(occurred_at=now)))
            return
        routes = self.routes(partition)
        outputs = routes.outputs(state)
        runs = [run_message(state, r, routes, send_after=now, outputs=outputs) for r in due.runs]
        self.transport.publish(runs, lambda confirmed, failed: None)
        rows = [
            TimerRow(
                timer_id(state.id, t.kind, t.position, t.attempt),
                state.id,
                partition,
                t.kind,
                t.position,
                t.attempt,
                t.due_at,
            )
            for t in due.timers
        ]
        if rows:
            self.store.upsert_timers(rows)
