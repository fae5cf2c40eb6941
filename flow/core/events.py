"""Events: what happened to a workflow, as input to :func:`flow.core.decide.decide`.

The shell stamps each with ``occurred_at``; the decision never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flow.core.state import ActivityState
from flow.core.vocabulary import Outcome, TimerKind


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
    #: Search attributes the attempt set (``set_attribute``), in the wire form of
    #: :func:`flow.core.attributes.to_wire`; recorded with the result unless it is stale.
    attributes: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ActivityHeartbeat:
    """The worker running ``attempt`` of the activity at ``position`` says it is alive;
    ``details`` (JSON, None: unchanged) is how far it got, for the next attempt."""

    position: int
    attempt: int
    occurred_at: datetime
    details: Any = None


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
    #: The run number this retry starts (a parent retrying its child); a retry for a run
    #: that was started already is stale. None: the next run.
    run: int | None = None


@dataclass(frozen=True)
class RerunRequested:
    """Someone asked to run an ended workflow again from the step ``from_step`` (an id):
    that step and everything that depends on it are reset (:mod:`flow.core.rerun`)."""

    occurred_at: datetime
    from_step: str
    #: Who asked (the API's caller, the CLI's user, a batch), for the history; None: unknown.
    by: str | None = None
    #: The definition version to move to, with its ``steps`` (its initial activities) and
    #: workflow ``config``; None: the workflow's own.
    version: int | None = None
    steps: tuple[ActivityState, ...] | None = None
    config: Mapping[str, Any] | None = None
    #: The input of the new run; None: the workflow's own.
    input_data: Mapping[str, Any] | None = None
    #: The run this rerun starts (a parent rerunning its child); None: the next one.
    run: int | None = None


@dataclass(frozen=True)
class PauseRequested:
    """Someone asked to pause the workflow: nothing new is scheduled until it resumes."""

    occurred_at: datetime


@dataclass(frozen=True)
class ResumeRequested:
    """Someone asked a paused workflow to go on."""

    occurred_at: datetime


@dataclass(frozen=True)
class SignalReceived:
    """A signal ``name`` with its JSON ``payload`` was sent to the workflow. ``signal_id``
    is derived from the sender's idempotency key when it gave one, so a retried send
    names the same signal (and is recorded once). Sent with a callback token, it is for
    one step of one run only: ``position`` and ``run`` (None for a signal by name)."""

    occurred_at: datetime
    name: str
    signal_id: str
    payload: Any = None
    position: int | None = None
    run: int | None = None


Event = (
    WorkflowStarted
    | ActivityStarted
    | ActivityCompleted
    | ActivityHeartbeat
    | TimerFired
    | CancelRequested
    | RetryRequested
    | RerunRequested
    | SignalReceived
    | PauseRequested
    | ResumeRequested
)

__all__ = [
    "ActivityCompleted",
    "ActivityHeartbeat",
    "ActivityStarted",
    "CancelRequested",
    "Event",
    "Outcome",
    "PauseRequested",
    "ResumeRequested",
    "RerunRequested",
    "RetryRequested",
    "SignalReceived",
    "TimerFired",
    "TimerKind",
    "WorkflowStarted",
]
