"""Deciding, in the workflow actors' threads: ``decide`` folded over a batch of events,
and the transition that records it — the changed state, the history, and what
:func:`flow.engine.planning.plan` says it owes — ready for the group committer."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from actors.workflow import Decided, Item, fold
from flow.clock import utcnow
from flow.core.at_once import let_in
from flow.core.callback_tokens import CallbackTokens
from flow.core.partitions import partition_of, partition_queue
from flow.core.state import WorkflowState
from flow.core.vocabulary import HistoryType
from flow.engine.planning import Routes, plan
from flow.engine.spans import WorkflowSpans
from flow.observability import tracing
from flow.persistence.attributes import set_by
from flow.persistence.mapping import inbox_changes
from flow.persistence.records import Transition, replaced
from flow.settings import Settings

logger = logging.getLogger(__name__)


class Transitions:
    """Builds each actor's transition (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        spans: WorkflowSpans,
        *,
        partitions: int,
        tokens: CallbackTokens | None = None,
        at_once: bool = False,
    ) -> None:
        self.settings = settings
        #: Offer a queued step's let-in outcome to the group commit (PostgreSQL's: SQLite's keeps today's path).
        self.at_once = at_once
        self.spans = spans
        self.partitions = partitions
        self.tokens = tokens
        self.prefix = settings.queue_prefix
        self._routes: dict[int, Routes] = {}

    def __repr__(self) -> str:
        return f"<Transitions {self.prefix} partitions={self.partitions}>"

    def queue_of(self, workflow_id: str) -> str:
        """The partition queue of another workflow (a child's parent, a parent's child)."""
        return partition_queue(self.prefix, partition_of(workflow_id, self.partitions))

    def routes(self, partition: int) -> Routes:
        """Where ``partition``'s messages go (built once per partition)."""
        routes = self._routes.get(partition)
        if routes is None:
            routes = self._routes[partition] = Routes(
                partition=partition,
                reply_to=partition_queue(self.prefix, partition),
                activity_queue=self.settings.activity_queue,
                engine_queue=self.settings.engine_queue,
                cancel_exchange=self.settings.cancel_exchange,
                queue_of=self.queue_of,
                tokens=self.tokens,
            )
        return routes

    def transition(
        self, before: WorkflowState, items: list[Item], *, version: int, partition: int, epoch: int
    ) -> tuple[Transition, Decided]:
        """Fold ``decide`` over ``items`` from ``before``; the transition to commit (with, when it
        queues a step that may be let in at once, that outcome too: :mod:`flow.core.at_once`)."""
        after, decided = fold(before, items)
        if tracing.ENABLED:
            after = self.spans.before_commit(before, after, partition=partition)
        now = utcnow()
        transition = self._build(before, after, decided, items, version=version, partition=partition, epoch=epoch)
        if self.at_once and not transition.rewritten:
            other = let_in(after, (d for _, d in decided), items[-1].event.occurred_at)
            if other is not None:
                more = decided + [(items[-1], d) for d in other.decisions]
                transition.at_once = self._build(
                    before, other.state, more, items, version=version, partition=partition, epoch=epoch, now=now
                )
                transition.let_in = list(other.claims)
        return transition, decided

    def _build(
        self,
        before: WorkflowState,
        after: WorkflowState,
        decided: Decided,
        items: list[Item],
        *,
        version: int,
        partition: int,
        epoch: int,
        now: datetime | None = None,
    ) -> Transition:
        now = now or utcnow()
        history = [(entry, item.event.occurred_at) for item, d in decided for entry in d.history]
        planned = plan(
            after,
            ((command, item.event.occurred_at) for item, d in decided for command in d.commands),
            self.routes(partition),
            send_after=now + timedelta(seconds=self.settings.outbox_grace_s),
            consumed_timers=[item.timer_id for item in items if item.timer_id],
            ended=[d.state for _, d in decided if any(entry.type.ends_workflow for entry in d.history)],
        )
        # A rerun lays the steps out afresh: its rows are replaced, not updated.
        rewritten = any(e.type is HistoryType.RERUN_WORKFLOW for _, d in decided for e in d.history)
        changed = [] if rewritten else replaced(before.activities, after.activities)
        added = [] if rewritten else list(after.activities[len(before.activities) :])  # a map's items
        signals_added, signals_taken = inbox_changes(before.inbox, after.inbox)
        return Transition(
            workflow_id=after.id,
            partition=partition,
            epoch=epoch,
            version=version,
            after=after,
            changed=changed,
            history=history,
            owed=planned.owed,
            timers_set=planned.timers_set,
            timers_deleted=planned.timers_deleted,
            updated_at=now,
            deliveries=[item.delivery for item in items if item.delivery is not None],
            fired_timers=[item.timer_id for item in items if item.timer_id],
            added=added,
            signals_added=signals_added,
            signals_taken=signals_taken,
            attributes_set=set_by(after.id, history),
            rewritten=rewritten,
        )

    def after_decisions(self, workflow_id: str, decided: Decided) -> None:
        """After the commit: the spans, and a log line for each workflow that ended."""
        if tracing.ENABLED and decided:
            self.spans.after_commit(decided[-1][1].state)
        for _, decision in decided:
            for entry in decision.history:
                if entry.type.ends_workflow:
                    logger.info(
                        "%s %s: %s",
                        decision.state.name,
                        entry.type,
                        decision.state.error or "ok",
                        extra={"workflow_id": workflow_id},
                    )
