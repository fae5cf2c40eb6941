"""Commands: what a decision asks the shell to send once its transition is committed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunActivity:
    """Send ``attempt`` of the activity at ``position`` to the activity workers now."""

    position: int
    attempt: int


@dataclass(frozen=True)
class StartTimer:
    """Wake the engine in ``delay_ms`` with a :class:`flow.events.TimerFired` of ``kind``."""

    kind: str
    delay_ms: int
    position: int | None
    attempt: int


Command = RunActivity | StartTimer
