"""What every decision is built of: the :class:`Decision` and :class:`HistoryEntry`
records, scheduling an attempt and its timers. Pure, like :mod:`flow.core.decide`
and :mod:`flow.core.maps`, which share these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flow.core.commands import CancelTimer, Command, RunActivity, StartTimer
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a workflow's event history."""

    type: HistoryType
    position: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of one event: the new state, what to send, what to record."""

    state: WorkflowState
    commands: tuple[Command, ...] = ()
    history: tuple[HistoryEntry, ...] = ()


def pending_again(activity: ActivityState) -> ActivityState:
    """An activity that failed, was skipped or cancelled, pending again with a fresh retry
    budget (a retry-from-failure; a map's resume of its items). Its attempt numbers go
    on, so a late result of an old attempt is still recognised as stale."""
    return replace(
        activity,
        status=ActivityStatus.PENDING,
        attempts_before=activity.attempt,
        output=None,
        error=None,
        skip_reason=None,
        scheduled_at=None,
        started_at=None,
        finished_at=None,
    )


def schedule(activity: ActivityState, now: datetime) -> tuple[ActivityState, list[Command], HistoryEntry]:
    attempt = activity.attempt + 1
    activity = replace(
        activity,
        status=ActivityStatus.SCHEDULED,
        attempt=attempt,
        scheduled_at=now,
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
    )
    commands: list[Command] = [RunActivity(activity.position, attempt)]
    if activity.timeouts.schedule_to_start_s:
        commands.append(
            timer(TimerKind.SCHEDULE_TO_START, activity.timeouts.schedule_to_start_s, activity.position, attempt)
        )
    return activity, commands, HistoryEntry(HistoryType.SCHEDULE_ACTIVITY, activity.position, {"attempt": attempt})


def timer(kind: TimerKind, seconds: float, position: int | None, attempt: int) -> StartTimer:
    return StartTimer(kind, int(seconds * 1000), position, attempt)


def attempt_timers(activity: ActivityState) -> list[Command]:
    """Cancel the timeout timers of ``activity``'s current attempt, which has ended."""
    commands: list[Command] = []
    if activity.timeouts.schedule_to_start_s and activity.status is ActivityStatus.SCHEDULED:
        commands.append(CancelTimer(TimerKind.SCHEDULE_TO_START, activity.position, activity.attempt))
    if activity.timeouts.start_to_close_s and activity.status is ActivityStatus.STARTED:
        commands.append(CancelTimer(TimerKind.START_TO_CLOSE, activity.position, activity.attempt))
    if activity.timeouts.heartbeat_s and activity.status is ActivityStatus.STARTED:
        commands.append(CancelTimer(TimerKind.HEARTBEAT, activity.position, activity.attempt))
    return commands


def with_activity(state: WorkflowState, activity: ActivityState) -> WorkflowState:
    activities = list(state.activities)
    activities[activity.position] = activity
    return replace(state, activities=tuple(activities))


def stale(fact: HistoryEntry) -> HistoryEntry:
    return replace(fact, data={**fact.data, "stale": True})


def has_decision(history: list[HistoryEntry] | tuple[HistoryEntry, ...]) -> bool:
    return any(h.type.is_decision for h in history)


def decided(state: WorkflowState, commands: list[Command], history: list[HistoryEntry]) -> Decision:
    if not has_decision(history):
        history.append(HistoryEntry(HistoryType.DO_NOTHING))
    return Decision(state, tuple(commands), tuple(history))


def nothing(state: WorkflowState, *history: HistoryEntry) -> Decision:
    """A decision that sends nothing; the history says so with ``do-nothing``."""
    if not has_decision(history):
        history = (*history, HistoryEntry(HistoryType.DO_NOTHING))
    return Decision(state, (), history)


def workflow_timer(state: WorkflowState) -> list[Command]:
    limit = state.timeouts.workflow_s
    return [timer(TimerKind.WORKFLOW, limit, None, state.run)] if limit else []


def end_of_run_timers(state: WorkflowState) -> list[Command]:
    """Timers the run's end makes pointless: its timeout, retries that will not run,
    sleeps and the timeouts of waits."""
    commands: list[Command] = []
    for a in state.activities:
        if a.status is ActivityStatus.WAITING_RETRY:
            commands.append(CancelTimer(TimerKind.RETRY, a.position, a.attempt + 1))
        elif a.status is ActivityStatus.WAITING and a.is_sleep:
            commands.append(CancelTimer(TimerKind.SLEEP, a.position, a.attempt))
        elif a.status is ActivityStatus.WAITING and a.timeout_s is not None:
            commands.append(CancelTimer(TimerKind.WAIT, a.position, a.attempt))
    if state.timeouts.workflow_s:
        commands.append(CancelTimer(TimerKind.WORKFLOW, None, state.run))
    return commands
