"""What an unfinished workflow is owed, read from its state alone: a pure function beside
:func:`flow.core.decide.decide`.

After a restart on the in-process broker every message is gone (the broker lived in
the dead process); the database alone says what each workflow waits for. This
function says it: the start of a workflow created but never started, and what each
step is owed (its kind says: :meth:`flow.core.kinds.StepKind.owed` — the run of an
attempt in flight, and every timer its state implies, with the due time the decision
chose), and the workflow's timeout from when its run started. No clock, no I/O: the
engine feeds it a paged query and sends what it returns (docs/design.md, "Recovery").

On RabbitMQ nothing needs re-deriving: messages are durable, what a transition
owes sits in the outbox until confirmed, and timers are rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flow.core.commands import RunActivity, RunChild
from flow.core.kinds import DueTimer, kind_of
from flow.core.state import WorkflowState
from flow.core.vocabulary import TimerKind


@dataclass(frozen=True)
class Owed:
    """Everything an unfinished workflow is waiting for."""

    #: Created but never started: its start-workflow event is owed.
    start: bool = False
    runs: tuple[RunActivity | RunChild, ...] = ()
    timers: tuple[DueTimer, ...] = ()


def owed(state: WorkflowState) -> Owed:
    """What ``state`` waits for (nothing once the workflow has ended)."""
    if state.status.ended:
        return Owed()
    if not state.started:
        return Owed(start=True)
    runs: list[RunActivity | RunChild] = []
    timers: list[DueTimer] = []
    for step in state.activities:
        if not state.runs(step):  # compensating: the run's steps were told to stop, owe nothing
            continue
        step_runs, step_timers = kind_of(step).owed(state, step)
        runs += step_runs
        timers += step_timers
    limit = state.timeouts.workflow_s
    if limit and state.run_started_at and state.status.open:
        timers.append(DueTimer(TimerKind.WORKFLOW, None, state.run, state.run_started_at + timedelta(seconds=limit)))
    return Owed(runs=tuple(runs), timers=tuple(timers))


__all__ = ["DueTimer", "Owed", "owed"]
