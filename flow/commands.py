"""Commands: what a decision asks the shell to send once its transition is committed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunActivity:
    """Send ``attempt`` of the activity at ``position`` to the activity workers now."""

    position: int
    attempt: int


@dataclass(frozen=True)
class StartRetryTimer:
    """Wake the engine in ``delay_ms`` to run ``attempt`` of the activity at ``position``."""

    position: int
    attempt: int
    delay_ms: int


Command = RunActivity | StartRetryTimer
