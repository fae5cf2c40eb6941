"""Letting a limited step in within the commit that queues it (docs/design.md, "Concurrency limits").

A decision that queues a step for a concurrency limit leaves it ``Queued``; the admission loop's grant
(a ``slot`` timer) lets it in later, at the cost of a second decision and commit — about what a plain
step's whole cycle costs. When the step's key has a free slot and nothing of that key waits, the group
commit may let it in at once instead. For that the engine offers it both outcomes: the queued one, and
the one the grant would have led to, which :func:`let_in` decides here — the ``slot`` timer's own
decision, folded on the queued state, so that what is stored (and the history: the grant's
``timer-fired``, then ``schedule-activity``) is what the grant's path would have stored. Which outcome is
committed is the group commit's choice, under the limits' locks (:mod:`flow.persistence.at_once`).

Only the steps queued by this very transition are offered (one that waited before waits in the
admission loop's order), only for a concurrency limit (a rate limit keeps the loop's pacing), never for
a paused workflow or one queued for its own limit, and at most :data:`MOST` of them: a map's hundreds
of items are the admission loop's to let in, round-robin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flow.core.decide import Decision, decide
from flow.core.events import TimerFired
from flow.core.limits import Claim
from flow.core.state import WorkflowState
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind, WorkflowStatus

#: Most steps one transition may have let in at once (more wait for the admission loop).
MOST = 8


@dataclass(frozen=True)
class LetIn:
    """The outcome in which a transition's newly queued steps are let in at once: the state, the
    ``slot`` decisions that led there (one per step), and the claims whose slots they take."""

    state: WorkflowState
    decisions: tuple[Decision, ...]
    claims: tuple[Claim, ...]


def let_in(after: WorkflowState, decisions: Iterable[Decision], now: datetime) -> LetIn | None:
    """The other outcome of a transition that leads to ``after`` by ``decisions``: its steps queued by
    these decisions, each let in as its grant would have (``now``: when). None when there is none to
    offer (see the module docstring)."""
    if after.status is not WorkflowStatus.IN_PROGRESS or after.paused or after.queued:
        return None
    positions: dict[int, int] = {}
    for decision in decisions:
        for entry in decision.history:
            if entry.type is HistoryType.QUEUE_ACTIVITY and entry.position is not None:
                positions[entry.position] = entry.data.get("attempt", 0)
    steps = []
    for position, attempt in positions.items():
        step = after.activity(position)
        if step is None or step.status is not ActivityStatus.QUEUED or step.attempt + 1 != attempt:
            continue  # queued, then something else happened to it in the same transition
        if step.claim is None or step.claim.rate:
            continue
        steps.append(step)
    if not steps or len(steps) > MOST:
        return None
    state, made = after, []
    for step in steps:
        decision = decide(state, TimerFired(TimerKind.SLOT, step.position, step.attempt + 1, now))
        let = decision.state.activity(step.position)
        if let is None or let.status is ActivityStatus.QUEUED:
            return None  # the grant would not have let it in: nothing to offer
        state = decision.state
        made.append(decision)
    return LetIn(state, tuple(made), tuple(s.claim for s in steps if s.claim is not None))


__all__ = ["MOST", "LetIn", "let_in"]
