"""Events: what happened to a workflow, as input to :func:`flow.core.decide.decide`.

The shell stamps each with ``occurred_at``; the decision never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

#: What ``BaseActivity.do_activity`` may return (an exception counts as a temporary failure).
Outcome = Literal["SUCCEEDED", "TEMPORARY_FAILURE", "PERMANENT_FAILURE"]
OUTCOMES: tuple[str, ...] = ("SUCCEEDED", "TEMPORARY_FAILURE", "PERMANENT_FAILURE")


class TimerKind(StrEnum):
    """What a timer is for."""

    #: Run the next attempt of an activity (its ``attempt`` is that next attempt).
    RETRY = "retry"
    #: No worker has started the attempt yet: it may have timed out.
    SCHEDULE_TO_START = "schedule-to-start"
    #: The attempt is still running: it may have timed out.
    START_TO_CLOSE = "start-to-close"
    #: The workflow's run (``attempt`` is the run number) may have timed out.
    WORKFLOW = "workflow"


@dataclass(frozen=True)
class WorkflowStarted:
    """The engine was told that a created workflow should run."""

    occurred_at: datetime


@dataclass(frozen=True)
class ActivityStarted:
    """A worker began ``attempt`` of the activity at ``position``."""

    position: int
    attempt: int
    occurred_at: datetime


@dataclass(frozen=True)
class ActivityCompleted:
    """A worker finished ``attempt`` of the activity at ``position``."""

    position: int
    attempt: int
    outcome: Outcome
    occurred_at: datetime
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TimerFired:
    """A timer the workflow set earlier is due.

    ``kind`` is ``retry`` (run ``attempt`` now), ``schedule-to-start`` or
    ``start-to-close`` (``attempt`` may have timed out), or ``workflow`` (the
    workflow's run number ``attempt`` may have timed out; ``position`` is None).
    """

    kind: TimerKind
    position: int | None
    attempt: int
    occurred_at: datetime


@dataclass(frozen=True)
class CancelRequested:
    """Someone asked to cancel the workflow."""

    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class RetryRequested:
    """Someone asked to run a failed or cancelled workflow again from where it stopped."""

    occurred_at: datetime


Event = WorkflowStarted | ActivityStarted | ActivityCompleted | TimerFired | CancelRequested | RetryRequested

TIMER_KINDS = tuple(kind.value for kind in TimerKind)
