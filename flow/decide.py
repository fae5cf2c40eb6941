"""The decision function: ``decide(state, event) -> Decision``. No I/O, no clock.

Vocabulary of decisions (and of the history): ``start-workflow``,
``schedule-activity``, ``reschedule-activity``, ``workflow-failure``,
``workflow-finished`` and ``do-nothing``. Each event also leaves one fact in the
history (``activity-started``, ``activity-result``, ``retry-due``), so a stale or
duplicate event is recorded even though it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flow.commands import Command, RunActivity, StartRetryTimer
from flow.events import ActivityCompleted, ActivityStarted, Event, RetryDue, WorkflowStarted
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

#: History types that are decisions (the rest are facts about the incoming event).
DECISIONS = frozenset(
    {
        "start-workflow",
        "schedule-activity",
        "reschedule-activity",
        "workflow-failure",
        "workflow-finished",
        "do-nothing",
    }
)


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a workflow's event history."""

    type: str
    position: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of one event: the new state, what to send, what to record."""

    state: WorkflowState
    commands: tuple[Command, ...] = ()
    history: tuple[HistoryEntry, ...] = ()


def decide(state: WorkflowState, event: Event) -> Decision:
    """Turn one event into the workflow's next state and the commands it owes."""
    if isinstance(event, WorkflowStarted):
        return _on_workflow_started(state, event)
    if isinstance(event, ActivityStarted):
        return _on_activity_started(state, event)
    if isinstance(event, ActivityCompleted):
        return _on_activity_completed(state, event)
    if isinstance(event, RetryDue):
        return _on_retry_due(state, event)
    raise TypeError(f"unknown event {event!r}")


# -- handlers ---------------------------------------------------------------------


def _on_workflow_started(state: WorkflowState, event: WorkflowStarted) -> Decision:
    if state.started or state.status.ended:
        return _nothing(state, HistoryEntry("do-nothing", data={"reason": "workflow already started"}))
    state = replace(state, started=True)
    history = [HistoryEntry("start-workflow", data={"definition_version": state.definition_version})]
    return _advance(state, event.occurred_at, history)


def _on_activity_started(state: WorkflowState, event: ActivityStarted) -> Decision:
    fact = HistoryEntry("activity-started", event.position, {"attempt": event.attempt})
    activity = state.activity(event.position)
    if activity is None or activity.attempt != event.attempt or activity.status is not ActivityStatus.SCHEDULED:
        return _nothing(state, _stale(fact))
    activity = replace(activity, status=ActivityStatus.STARTED, started_at=event.occurred_at)
    return _nothing(_with_activity(state, activity), fact)


def _on_activity_completed(state: WorkflowState, event: ActivityCompleted) -> Decision:
    fact = HistoryEntry(
        "activity-result",
        event.position,
        {"attempt": event.attempt, "outcome": event.outcome, **({"error": event.error} if event.error else {})},
    )
    activity = state.activity(event.position)
    if activity is None or activity.attempt != event.attempt or not activity.status.in_flight:
        return _nothing(state, _stale(fact))

    activity = replace(
        activity,
        output=event.output,
        error=event.error,
        started_at=event.started_at or activity.started_at,
        finished_at=event.finished_at or event.occurred_at,
    )
    if state.status.ended:
        # A late result: recorded on the activity, but the workflow decides nothing more.
        status = ActivityStatus.SUCCEEDED if event.outcome == "SUCCEEDED" else ActivityStatus.FAILED
        state = _with_activity(state, replace(activity, status=status))
        return _nothing(state, fact, HistoryEntry("do-nothing", event.position, {"reason": f"workflow {state.status}"}))

    history = [fact]
    commands: list[Command] = []
    if event.outcome == "SUCCEEDED":
        activity = replace(activity, status=ActivityStatus.SUCCEEDED, error=None)
    elif event.outcome == "TEMPORARY_FAILURE" and activity.attempt < activity.retry.max_attempts:
        next_attempt = activity.attempt + 1
        delay_ms = activity.retry.delay_ms(activity.attempt, seed=f"{state.id}:{activity.position}:{next_attempt}")
        activity = replace(activity, status=ActivityStatus.WAITING_RETRY, finished_at=event.occurred_at)
        commands.append(StartRetryTimer(activity.position, next_attempt, delay_ms))
        history.append(
            HistoryEntry("reschedule-activity", activity.position, {"attempt": next_attempt, "delay_ms": delay_ms})
        )
    else:
        activity = replace(activity, status=ActivityStatus.FAILED)
        if activity.required:
            state = _with_activity(state, activity)
            reason = "PERMANENT_FAILURE" if event.outcome == "PERMANENT_FAILURE" else f"{activity.attempt} attempts"
            error = f"required activity {activity.name} (position {activity.position}) failed: {reason}"
            return _fail(state, event.occurred_at, error, history)

    state = _with_activity(state, activity)
    return _advance(state, event.occurred_at, history, commands)


def _on_retry_due(state: WorkflowState, event: RetryDue) -> Decision:
    fact = HistoryEntry("retry-due", event.position, {"attempt": event.attempt})
    activity = state.activity(event.position)
    if (
        state.status.ended
        or activity is None
        or activity.status is not ActivityStatus.WAITING_RETRY
        or event.attempt != activity.attempt + 1
    ):
        return _nothing(state, _stale(fact))
    activity, command, entry = _schedule(activity, event.occurred_at)
    return Decision(_with_activity(state, activity), (command,), (fact, entry))


# -- helpers ----------------------------------------------------------------------


def _advance(
    state: WorkflowState,
    now: datetime,
    history: list[HistoryEntry],
    commands: list[Command] | None = None,
) -> Decision:
    """Schedule every activity that became ready, or finish the workflow."""
    commands = list(commands or [])
    activities = list(state.activities)
    for position in ready_positions(state):
        activities[position], command, entry = _schedule(activities[position], now)
        commands.append(command)
        history.append(entry)
    state = replace(state, activities=tuple(activities))
    if all(a.status.ended for a in state.activities):
        output = {a.name: a.output for a in state.activities if a.output is not None}
        state = replace(state, status=WorkflowStatus.FINISHED, finished_at=now, output=output)
        history.append(HistoryEntry("workflow-finished"))
    return _nothing(state, *history) if not _has_decision(history) else Decision(state, tuple(commands), tuple(history))


def ready_positions(state: WorkflowState) -> list[int]:
    """Pending activities whose turn has come.

    An independent activity is ready once the workflow started; any other one once
    every activity listed before it has ended.
    """
    if not state.started or state.status.ended:
        return []
    ready = []
    all_before_ended = True
    for activity in state.activities:
        if activity.status is ActivityStatus.PENDING and (activity.independent or all_before_ended):
            ready.append(activity.position)
        all_before_ended = all_before_ended and activity.status.ended
    return ready


def _schedule(activity: ActivityState, now: datetime) -> tuple[ActivityState, RunActivity, HistoryEntry]:
    attempt = activity.attempt + 1
    activity = replace(
        activity,
        status=ActivityStatus.SCHEDULED,
        attempt=attempt,
        scheduled_at=now,
        started_at=None,
        finished_at=None,
    )
    return (
        activity,
        RunActivity(activity.position, attempt),
        HistoryEntry("schedule-activity", activity.position, {"attempt": attempt}),
    )


def _fail(state: WorkflowState, now: datetime, error: str, history: list[HistoryEntry]) -> Decision:
    """Fail the workflow: nothing new is scheduled; waiting activities are skipped."""
    activities = tuple(
        replace(a, status=ActivityStatus.SKIPPED)
        if a.status in (ActivityStatus.PENDING, ActivityStatus.WAITING_RETRY)
        else a
        for a in state.activities
    )
    state = replace(state, status=WorkflowStatus.FAILED, activities=activities, error=error, finished_at=now)
    history.append(HistoryEntry("workflow-failure", data={"error": error}))
    return Decision(state, (), tuple(history))


def _with_activity(state: WorkflowState, activity: ActivityState) -> WorkflowState:
    activities = list(state.activities)
    activities[activity.position] = activity
    return replace(state, activities=tuple(activities))


def _stale(fact: HistoryEntry) -> HistoryEntry:
    return replace(fact, data={**fact.data, "stale": True})


def _has_decision(history: list[HistoryEntry] | tuple[HistoryEntry, ...]) -> bool:
    return any(h.type in DECISIONS for h in history)


def _nothing(state: WorkflowState, *history: HistoryEntry) -> Decision:
    """A decision that sends nothing; the history says so with ``do-nothing``."""
    if not _has_decision(history):
        history = (*history, HistoryEntry("do-nothing"))
    return Decision(state, (), history)
