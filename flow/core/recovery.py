"""What an unfinished workflow is owed, read from its state alone: a pure function beside
:func:`flow.core.decide.decide`.

After a restart on the in-process broker every message is gone (the broker lived in
the dead process); the database alone says what each workflow waits for. This
function says it: the start of a workflow created but never started, the run of
every attempt in flight, and every timer the state implies with the due time the
decision chose (a retry timer from the failed attempt's end plus the policy's
delay, a timeout from when its attempt was scheduled or started, the workflow's
timeout from when its run started). No clock, no I/O: the engine feeds it a paged
query and sends what it returns (docs/design.md, "Recovery").

On RabbitMQ nothing needs re-deriving: messages are durable, what a transition
owes sits in the outbox until confirmed, and timers are rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flow.core import sleeps
from flow.core.commands import RunActivity
from flow.core.decide import retry_delay_ms
from flow.core.state import WorkflowState
from flow.core.vocabulary import ActivityStatus, TimerKind


@dataclass(frozen=True)
class DueTimer:
    """A timer the workflow waits for, due at ``due_at`` (naive UTC)."""

    kind: TimerKind
    position: int | None
    attempt: int
    due_at: datetime


@dataclass(frozen=True)
class Owed:
    """Everything an unfinished workflow is waiting for."""

    #: Created but never started: its start-workflow event is owed.
    start: bool = False
    runs: tuple[RunActivity, ...] = ()
    timers: tuple[DueTimer, ...] = ()


def owed(state: WorkflowState) -> Owed:
    """What ``state`` waits for (nothing once the workflow has ended)."""
    if state.status.ended:
        return Owed()
    if not state.started:
        return Owed(start=True)
    runs: list[RunActivity] = []
    timers: list[DueTimer] = []
    for a in state.activities:
        timeouts = a.timeouts
        if a.status is ActivityStatus.SCHEDULED:
            runs.append(RunActivity(a.position, a.attempt))
            if timeouts.schedule_to_start_s and a.scheduled_at:
                due = a.scheduled_at + timedelta(seconds=timeouts.schedule_to_start_s)
                timers.append(DueTimer(TimerKind.SCHEDULE_TO_START, a.position, a.attempt, due))
        elif a.status is ActivityStatus.STARTED:
            runs.append(RunActivity(a.position, a.attempt))
            if timeouts.start_to_close_s and a.started_at:
                due = a.started_at + timedelta(seconds=timeouts.start_to_close_s)
                timers.append(DueTimer(TimerKind.START_TO_CLOSE, a.position, a.attempt, due))
            # No heartbeat timer: the attempt is sent again, and its copy's first heartbeat
            # sets it. One from the last heartbeat before the restart would fail the
            # copy the moment it is sent.
        elif a.status is ActivityStatus.WAITING and (until := sleeps.wake_time(a)) is not None:
            timers.append(DueTimer(TimerKind.SLEEP, a.position, a.attempt, until))
        elif a.status is ActivityStatus.WAITING and a.timeout_s is not None and a.started_at:
            due = a.started_at + timedelta(seconds=a.timeout_s)
            timers.append(DueTimer(TimerKind.WAIT, a.position, a.attempt, due))
        elif a.status is ActivityStatus.WAITING_RETRY and a.finished_at:
            due = a.finished_at + timedelta(milliseconds=retry_delay_ms(state, a))
            timers.append(DueTimer(TimerKind.RETRY, a.position, a.attempt + 1, due))
    limit = state.timeouts.workflow_s
    if limit and state.run_started_at:
        timers.append(DueTimer(TimerKind.WORKFLOW, None, state.run, state.run_started_at + timedelta(seconds=limit)))
    return Owed(runs=tuple(runs), timers=tuple(timers))
