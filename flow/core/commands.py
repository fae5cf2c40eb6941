"""Commands: what a decision asks the shell to do once its transition is committed."""

from __future__ import annotations

from dataclasses import dataclass

from flow.core.vocabulary import TimerKind


@dataclass(frozen=True)
class RunActivity:
    """Send ``attempt`` of the activity at ``position`` to the activity workers now."""

    position: int
    attempt: int


@dataclass(frozen=True)
class StartTimer:
    """Wake the workflow in ``delay_ms`` with a :class:`flow.core.events.TimerFired` of ``kind``."""

    kind: TimerKind
    delay_ms: int
    position: int | None
    attempt: int


@dataclass(frozen=True)
class CancelTimer:
    """Forget a timer that can no longer matter (its attempt or run has ended)."""

    kind: TimerKind
    position: int | None
    attempt: int


@dataclass(frozen=True)
class RunChild:
    """Start ``attempt`` of the child workflow step at ``position`` (or find the child that
    a copy of this command started already): the engine's plan sends its start."""

    position: int
    attempt: int


@dataclass(frozen=True)
class CancelChild:
    """Cancel the child workflow that the activity at ``position`` runs (its parent ended: cancelled or failed)."""

    position: int


@dataclass(frozen=True)
class CancelAttempt:
    """Tell the worker running ``attempt`` of the activity at ``position`` to stop: its
    result no longer matters. Advisory: an activity that never heartbeats runs on."""

    position: int
    attempt: int


Command = RunActivity | RunChild | StartTimer | CancelTimer | CancelChild | CancelAttempt
