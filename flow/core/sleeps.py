"""Durable sleeps: a step that waits ``sleep_s`` seconds, or until the time a JMESPath
expression gives (``sleep_until``), then succeeds.

A sleep is a timer row and nothing else while it waits: no thread, no message held
by a worker or the broker. When its turn comes the step is ``Waiting``, its output
``{"until": "<ISO 8601, UTC>"}`` says when it wakes (so recovery after a restart
finds the same due time without evaluating anything again), and a
:class:`~flow.core.vocabulary.TimerKind` ``sleep`` timer is set for that time, with
the step's attempt number so that a timer of an earlier run is recognised as stale.
A time already past wakes it at once.

Pure: ``now`` is the event's time; no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flow.core import graph
from flow.core.commands import StartTimer
from flow.core.policy import MAX_TIMEOUT_S
from flow.core.state import ActivityState, WorkflowState
from flow.core.steps import HistoryEntry
from flow.core.timestamps import iso
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind

#: The ``name`` a sleep step has in the API (it runs no ``BaseActivity``).
NAME = graph.SLEEP_NAME

#: What :func:`start` adds to the decision's deferred schedules (see :mod:`flow.core.maps`).
Scheduled = list[tuple[int, list[Any], HistoryEntry]]


def start(
    state: WorkflowState, activities: list[ActivityState], position: int, now: datetime, scheduled: Scheduled
) -> graph.Verdict:
    """The sleep at ``position`` is ready: set it ``Waiting`` with its timer, or fail it
    (``sleep_until`` gave no usable time). Returns :data:`graph.WAIT` when handled."""
    step = activities[position]
    until = _wake_time(step, state, activities, now)
    if isinstance(until, str):
        return graph.Verdict(fail=until)
    attempt = step.attempt + 1
    activities[position] = replace(
        step,
        status=ActivityStatus.WAITING,
        attempt=attempt,
        scheduled_at=now,
        started_at=now,
        finished_at=None,
        output={"until": iso(until)},
    )
    # Rounded up: a timer never wakes the step before its time (due = the event's time + delay).
    delay_ms = max(0, -((now - until) // timedelta(milliseconds=1)))
    timer = StartTimer(TimerKind.SLEEP, delay_ms, position, attempt)
    scheduled.append((position, [timer], HistoryEntry(HistoryType.START_SLEEP, position, {"until": iso(until)})))
    return graph.WAIT


def wake_time(step: ActivityState) -> datetime | None:
    """When a ``Waiting`` sleep wakes (naive UTC), read from its output."""
    until = step.output.get("until") if isinstance(step.output, dict) else None
    return _parse(until) if isinstance(until, str) else None


def _wake_time(step: ActivityState, state: WorkflowState, activities: list[ActivityState], now: datetime) -> Any:
    """The time to wake (naive UTC), or why there is none."""
    if step.sleep_s is not None:
        return now + timedelta(seconds=step.sleep_s)
    assert step.sleep_until is not None
    expression = step.sleep_until
    try:
        value = graph.evaluate(expression, graph.condition_context(state.input_data, activities))
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return graph.storable(f"sleep_until {expression!r} could not be evaluated: {type(e).__name__}: {e}")
    until = _parse(value) if isinstance(value, str) else None
    if until is None:
        return graph.storable(
            f"sleep_until {expression!r} gave {graph.quoted(value)}, not an ISO 8601 time (2026-12-01T09:00:00Z)"
        )
    if until - now > timedelta(seconds=MAX_TIMEOUT_S):
        return f"sleep_until {expression!r} gave {iso(until)}, more than {MAX_TIMEOUT_S // 86400} days ahead"
    return until


def _parse(text: str) -> datetime | None:
    """An ISO 8601 time as naive UTC; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        # Near year 1 or 9999 the offset can carry it off the calendar: not a usable time.
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError):
        return None
