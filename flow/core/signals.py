"""Signals: a step that waits for a named signal (``wait_for``), and the workflow's inbox.

- A signal that arrives while a step waits for its name ends that step (the earliest
  such step): the step succeeds with the signal's payload as its output.
- A signal that arrives before any step waits for it is *kept* in the inbox, and the
  first step that waits for its name takes it when its turn comes (Temporal's
  guarantee: no signal is lost because it came early).
- A signal is recorded once: a repeated send with the same id (the sender's
  idempotency key) changes nothing. A signal for an ended workflow is dropped (the
  API answers 409 before that; a race still ends here, recorded).
- A signal sent with a callback token (:mod:`flow.core.callback_tokens`) names its step and
  run: only that step takes it, in that run, and once. For a step that has ended, or
  of an earlier run, it is dropped (the API answers 410 before that; a race ends here).
- A wait with ``timeout_s`` fails when no signal came in time, as an activity's
  timeout does, and ``required`` decides the rest.

Pure: the inbox is part of the state, stored with the workflow in the same commit as
the history entry that records the signal.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from flow.core import graph
from flow.core.commands import CancelTimer, Command, StartTimer
from flow.core.events import SignalReceived
from flow.core.state import ActivityState, Signal, WorkflowState
from flow.core.steps import HistoryEntry, with_activity
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind

#: The ``name`` a wait step has in the API (it runs no ``BaseActivity``).
NAME = graph.WAIT_NAME
#: Most signals a workflow keeps (taken ones included, so that repeats are recognised).
MAX_SIGNALS = 1000
#: What a signal's name looks like.
NAME_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN.replace("$", r"\Z"))
#: A wait's ``choices``: the answers the web page offers as buttons, each sending the
#: payload ``{"choice": <answer>}``. What one looks like, and how many a wait may offer.
CHOICE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$"
MAX_CHOICES = 10

Scheduled = list[tuple[int, list[Any], HistoryEntry]]


def is_signal_name(value: str) -> bool:
    return _NAME.match(value) is not None


def start(
    activities: list[ActivityState],
    inbox: list[Signal],
    position: int,
    now: datetime,
    scheduled: Scheduled,
    *,
    run: int = 1,
) -> graph.Verdict:
    """The wait at ``position`` is ready: take a kept signal for it (it succeeds), or
    wait (with its timeout's timer). ``activities`` and ``inbox`` are the decision's
    working lists; ``run`` is the workflow's."""
    step = activities[position]
    attempt = step.attempt + 1
    step = replace(step, attempt=attempt, scheduled_at=now, started_at=now, finished_at=None, output=None)
    kept = next((i for i, s in enumerate(inbox) if s.is_for(step, run)), None)
    if kept is not None:
        signal = inbox[kept]
        inbox[kept] = replace(signal, payload=None, consumed_by=position)
        activities[position] = _ended_by(step, signal, now)
        scheduled.append((position, [], _end_entry(position, signal, kept=True)))
        return graph.WAIT
    activities[position] = replace(step, status=ActivityStatus.WAITING)
    commands: list[Command] = []
    if step.timeout_s is not None:
        commands.append(StartTimer(TimerKind.WAIT, int(step.timeout_s * 1000), position, attempt))
    data = {"signal": step.wait_for, **({"timeout_s": step.timeout_s} if step.timeout_s is not None else {})}
    scheduled.append((position, commands, HistoryEntry(HistoryType.START_WAIT, position, data)))
    return graph.WAIT


def received(
    state: WorkflowState, event: SignalReceived, history: list[HistoryEntry]
) -> tuple[WorkflowState, list[Command], int | None]:
    """A signal for a running workflow: the state with it taken or kept, the commands
    owed, and the position of the step it ended (None when kept or a repeat)."""
    if any(s.id == event.signal_id for s in state.inbox):
        history.append(
            HistoryEntry(HistoryType.DO_NOTHING, data={"reason": f"signal {event.signal_id} already received"})
        )
        return state, [], None
    signal = Signal(event.signal_id, event.name, event.occurred_at, event.payload, None, event.position, event.run)
    if signal.position is not None:
        refused = _refused(state, signal)
        if refused:
            history.append(HistoryEntry(HistoryType.DO_NOTHING, signal.position, {"reason": refused}))
            return state, [], None
        step = state.activities[signal.position]
        waiting = step if step.status is ActivityStatus.WAITING else None
    else:
        waiting = next(
            (a for a in state.activities if a.status is ActivityStatus.WAITING and a.wait_for == event.name), None
        )
    if waiting is None and len(state.inbox) >= MAX_SIGNALS:
        # Only keeping is bounded: a signal a step waits for is always taken.
        reason = f"the inbox holds {MAX_SIGNALS} signals already: signal dropped"
        history.append(HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
        return state, [], None
    if waiting is None:
        history.append(HistoryEntry(HistoryType.KEEP_SIGNAL, data={"name": event.name, "signal_id": event.signal_id}))
        return replace(state, inbox=(*state.inbox, signal)), [], None
    commands: list[Command] = []
    if waiting.timeout_s is not None:
        commands.append(CancelTimer(TimerKind.WAIT, waiting.position, waiting.attempt))
    taken = replace(signal, payload=None, consumed_by=waiting.position)
    state = with_activity(replace(state, inbox=(*state.inbox, taken)), _ended_by(waiting, signal, event.occurred_at))
    history.append(_end_entry(waiting.position, signal, kept=False))
    return state, commands, waiting.position


def _refused(state: WorkflowState, signal: Signal) -> str | None:
    """Why a signal sent with a callback token cannot go to its step, if it cannot."""
    step = state.activity(signal.position) if signal.position is not None else None
    if step is None or step.wait_for != signal.name or step.position >= state.size:
        return f"callback signal {signal.id}: no wait for {signal.name!r} at position {signal.position}: dropped"
    if signal.run != state.run:
        return f"callback signal {signal.id}: its token is of run {signal.run}, the workflow is on run {state.run}"
    if step.status.ended:
        return f"callback signal {signal.id}: wait {step.id} has ended ({step.status}): dropped"
    return None


def timed_out(step: ActivityState, now: datetime) -> ActivityState:
    """The wait's timeout fired while it still waited: it failed."""
    error = f"wait timeout: no signal {step.wait_for!r} within {step.timeout_s} s"
    return replace(step, status=ActivityStatus.FAILED, error=error, finished_at=now)


def _ended_by(step: ActivityState, signal: Signal, now: datetime) -> ActivityState:
    return replace(step, status=ActivityStatus.SUCCEEDED, output=signal.payload, error=None, finished_at=now)


def _end_entry(position: int, signal: Signal, *, kept: bool) -> HistoryEntry:
    return HistoryEntry(HistoryType.END_WAIT, position, {"signal": signal.name, "signal_id": signal.id, "kept": kept})
