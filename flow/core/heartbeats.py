"""Heartbeats: a long attempt says it is alive and how far it got; an attempt whose
result no longer matters is told to stop. Pure, beside :mod:`flow.core.decide`
(docs/design.md, "Heartbeats and cancellation").

- An attempt with ``timeouts.heartbeat_s`` has a heartbeat timer from its start; each
  heartbeat moves it on. When it fires and the last heartbeat is older than
  ``heartbeat_s``, the attempt failed (its worker is dead or stuck) and is retried per
  its policy. A timer that fires although a heartbeat came in the meantime (the timer
  row was taken just before the heartbeat moved it) is set again for what is left.
- A heartbeat of an attempt that is not the current one in flight, or whose workflow
  ended, is answered with :class:`~flow.core.commands.CancelAttempt`: its worker
  raises the cancellation at the activity's next ``self.heartbeat()``.
- Workers throttle heartbeats (:mod:`flow.worker.heartbeats`), so a busy loop calling
  ``self.heartbeat()`` costs at most two transitions per ``heartbeat_s``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from flow.core.commands import CancelAttempt, CancelTimer, Command
from flow.core.events import ActivityHeartbeat
from flow.core.state import ActivityState, WorkflowState
from flow.core.steps import Decision, HistoryEntry, stale, timer, with_activity
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind


def on_heartbeat(state: WorkflowState, event: ActivityHeartbeat) -> Decision:
    """Record a heartbeat (and its details) and move the heartbeat timer on; or tell a
    stale attempt to stop."""
    shown = {"details": event.details} if _small(event.details) else {}  # progress, for `flow run`
    fact = HistoryEntry(HistoryType.ACTIVITY_HEARTBEAT, event.position, {"attempt": event.attempt, **shown})
    activity = state.activity(event.position)
    if activity is None or not _runs_on_workers(activity):
        return Decision(state, (), (stale(fact), HistoryEntry(HistoryType.DO_NOTHING)))
    current = activity.attempt == event.attempt and activity.status.in_flight
    if not current or state.status.ended:
        if event.attempt > activity.attempt:  # not an attempt of ours: nothing to stop
            return Decision(state, (), (stale(fact), HistoryEntry(HistoryType.DO_NOTHING)))
        reason = f"workflow {state.status}" if current else f"attempt {event.attempt} is not the current one"
        stop = HistoryEntry(HistoryType.CANCEL_ATTEMPT, event.position, {"attempt": event.attempt, "reason": reason})
        return Decision(state, (CancelAttempt(event.position, event.attempt),), (stale(fact), stop))
    commands: list[Command] = []
    if activity.status is ActivityStatus.SCHEDULED:
        # The heartbeat came before the started report (it is sent late on purpose):
        # it proves the attempt started.
        activity = replace(activity, status=ActivityStatus.STARTED, started_at=event.occurred_at)
        commands += started_timers(activity, event.attempt)
    elif activity.timeouts.heartbeat_s:
        commands.append(timer(TimerKind.HEARTBEAT, activity.timeouts.heartbeat_s, activity.position, event.attempt))
    details = activity.heartbeat if event.details is None else event.details
    activity = replace(activity, heartbeat=details, heartbeat_at=event.occurred_at)
    return Decision(with_activity(state, activity), tuple(commands), (fact, HistoryEntry(HistoryType.DO_NOTHING)))


#: Heartbeat details up to this many bytes of JSON are copied into the history entry.
SHOWN_BYTES = 200


def _small(details: object) -> bool:
    return details is not None and len(json.dumps(details)) <= SHOWN_BYTES


def _runs_on_workers(activity: ActivityState) -> bool:
    """A class activity or a map's item: not a sleep, a wait, a map or a child workflow."""
    return not (activity.is_sleep or activity.wait_for is not None or activity.map_over is not None or activity.child)


def started_timers(activity: ActivityState, attempt: int, *, ended: bool = False) -> list[Command]:
    """The timers of an attempt that just started: the schedule-to-start one is done
    with; its start-to-close and heartbeat timers begin (unless its workflow ``ended``)."""
    commands: list[Command] = []
    timeouts = activity.timeouts
    if timeouts.schedule_to_start_s:
        commands.append(CancelTimer(TimerKind.SCHEDULE_TO_START, activity.position, attempt))
    if ended:
        return commands
    if timeouts.start_to_close_s:
        commands.append(timer(TimerKind.START_TO_CLOSE, timeouts.start_to_close_s, activity.position, attempt))
    if timeouts.heartbeat_s:
        commands.append(timer(TimerKind.HEARTBEAT, timeouts.heartbeat_s, activity.position, attempt))
    return commands


def still_beating(activity: ActivityState, now: datetime) -> Command | None:
    """The heartbeat timer again, for what is left, if a heartbeat came within
    ``heartbeat_s`` of ``now`` (the timer fired late, racing it); None: timed out."""
    limit = activity.timeouts.heartbeat_s
    if not limit or activity.heartbeat_at is None:
        return None
    left = activity.heartbeat_at + timedelta(seconds=limit) - now
    if left <= timedelta(0):
        return None
    return timer(TimerKind.HEARTBEAT, left.total_seconds(), activity.position, activity.attempt)


def cancel_running(state: WorkflowState) -> list[Command]:
    """Stop every attempt in flight (the workflow was cancelled); children are
    cancelled as workflows instead."""
    return [CancelAttempt(a.position, a.attempt) for a in state.activities if a.status.in_flight and a.child is None]
