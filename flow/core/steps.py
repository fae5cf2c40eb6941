"""What every decision is built of: the :class:`Decision` and :class:`HistoryEntry`
records and the small helpers that :mod:`flow.core.decide` and the step kinds
(:mod:`flow.core.kinds`) share. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flow.core.commands import Command, StartTimer
from flow.core.frozen import replace
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


def timer(kind: TimerKind, seconds: float, position: int | None, attempt: int) -> StartTimer:
    return StartTimer(kind, int(seconds * 1000), position, attempt)


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
