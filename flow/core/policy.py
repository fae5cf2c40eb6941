"""Retry policy: how often and how soon a failed activity attempt runs again; timeouts.

The bounds below are the definition schema's (:mod:`flow.core.definition`): every number
the engine computes with has one, so a definition that validates can always run
(docs/design.md, invariant 9). They are far beyond what a workflow needs and far inside what
``datetime``, ``timedelta`` and the broker can represent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Most attempts of one activity (``retry.max_attempts``).
MAX_ATTEMPTS = 1000
#: Longest retry delay (``retry.initial_delay_ms``, ``retry.max_delay_ms``): 7 days.
MAX_DELAY_MS = 7 * 24 * 3600 * 1000
#: Largest ``retry.backoff`` factor.
MAX_BACKOFF = 100
#: Longest timeout (``timeouts.*_s``): 366 days.
MAX_TIMEOUT_S = 366 * 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is tried again.

    Set as ``config.retry`` on the workflow (defaults for every activity) or on an
    activity (overrides, field by field). Validated when the definition loads.
    """

    #: Attempts in all, the first included. 1 means "never retry".
    max_attempts: int = 3
    #: Delay before the second attempt, in milliseconds.
    initial_delay_ms: int = 1000
    #: Each further delay is the previous one times this factor.
    backoff: float = 2.0
    #: No delay is longer than this, in milliseconds.
    max_delay_ms: int = 60_000
    #: Fraction of the delay that is randomised, 0 to 1 (0.1 = up to ±10%).
    jitter: float = 0.1

    @classmethod
    def from_config(cls, *layers: Mapping[str, Any] | None) -> RetryPolicy:
        """Overlay the ``retry`` objects of each config layer, later ones winning."""
        return cls(**_overlay("retry", layers))

    def delay_ms(self, failed_attempt: int, *, seed: str) -> int:
        """Delay before the attempt after ``failed_attempt`` (1-based).

        Jitter is derived from ``seed`` (the workflow id, activity and attempt)
        rather than a random generator, so the decision stays a pure function.
        """
        base = float(min(self.initial_delay_ms, self.max_delay_ms))
        exponent = max(failed_attempt - 1, 0)
        if base > 0 and self.backoff > 1 and exponent:
            # backoff ** exponent overflows a float (100 ** 999) long before the
            # attempts run out: past the exponent at which the cap is reached, the
            # delay is the cap, computed without the power.
            cap_exponent = math.log(self.max_delay_ms / base) / math.log(self.backoff)
            base = self.max_delay_ms if exponent >= cap_exponent else base * self.backoff**exponent
        base = min(base, self.max_delay_ms)
        if self.jitter:
            digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
            unit = int.from_bytes(digest, "big") / 2**64  # in [0, 1)
            base *= 1 + self.jitter * (2 * unit - 1)
        return max(0, int(base))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "initial_delay_ms": self.initial_delay_ms,
            "backoff": self.backoff,
            "max_delay_ms": self.max_delay_ms,
            "jitter": self.jitter,
        }


@dataclass(frozen=True)
class Timeouts:
    """How long an attempt or a workflow may take, in seconds; ``None`` is no limit.

    Set as ``config.timeouts`` on the workflow (``workflow_s`` there, and defaults for
    every activity) or on an activity (overrides, field by field).
    """

    #: An attempt that no worker starts within this long after it was scheduled fails
    #: (a lost message or a dead queue shows up as a failed attempt, then a retry).
    schedule_to_start_s: float | None = None
    #: An attempt that runs longer is stopped in the worker and fails (then is retried).
    start_to_close_s: float | None = None
    #: An attempt whose worker sends no heartbeat (``self.heartbeat()``) for this long
    #: fails (then is retried): a dead worker is noticed in seconds, not at start-to-close.
    heartbeat_s: float | None = None
    #: A workflow that has not ended this long after it started fails.
    workflow_s: float | None = None

    @classmethod
    def from_config(cls, *layers: Mapping[str, Any] | None) -> Timeouts:
        """Overlay the ``timeouts`` objects of each config layer, later ones winning."""
        return cls(**_overlay("timeouts", layers))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_to_start_s": self.schedule_to_start_s,
            "start_to_close_s": self.start_to_close_s,
            "heartbeat_s": self.heartbeat_s,
            "workflow_s": self.workflow_s,
        }


def _overlay(key: str, layers: tuple[Mapping[str, Any] | None, ...]) -> dict[str, Any]:
    """The ``key`` objects of the config layers merged field by field, later ones winning."""
    fields: dict[str, Any] = {}
    for layer in layers:
        if layer and isinstance(layer.get(key), Mapping):
            fields.update(layer[key])
    return fields
