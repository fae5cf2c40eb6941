"""When the client tries a request again, and how long it waits first: pure arithmetic,
like Dramatiq's ``compute_backoff``, so that a table test pins it.

A request is tried again after an answer that means "not now" (429, 502, 503, 504) or
no answer at all. That is safe because every request the client repeats has the same
effect twice as once: reads; starts, which always carry an idempotency key (the client
makes one when the caller gives none); signals, which carry one too; events, whose
``id`` the server remembers; a cancel. A request that is not so (a retry) is repeated
only when it cannot have reached the server: the connection was refused.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from email.utils import parsedate_to_datetime


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried.

    The n-th wait is ``first_delay_s * 2 ** (n - 1)``, at most ``max_delay_s``, with
    jitter (a random half of it, so many clients turned away together do not come back
    together), unless the answer said ``Retry-After``: then exactly that. A
    ``Retry-After`` over ``max_retry_after_s`` is not waited for: the error is raised
    at once, with :attr:`~flow.client.ApiError.retry_after_s` saying when to come back.
    """

    #: Tries in all, the first included (1: never try again).
    attempts: int = 5
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be 1 or more, not {self.attempts}")
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError("RetryPolicy needs 0 <= first_delay_s <= max_delay_s")

    def delay_s(self, tried: int, *, retry_after_s: float | None, jitter: float) -> float | None:
        """Seconds to wait before the next try, after ``tried`` tries (1 or more) that
        were turned away; ``None``: try no more. ``jitter`` is a number in [0, 1)."""
        if tried >= self.attempts:
            return None
        if retry_after_s is not None:
            return None if retry_after_s > self.max_retry_after_s else max(0.0, retry_after_s)
        backoff = min(self.max_delay_s, self.first_delay_s * 2 ** (tried - 1))
        return backoff * (0.5 + jitter / 2)


#: Never try again: for callers that handle a 503 themselves.
NO_RETRIES = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (an aware datetime): it is
    either a number of seconds or an HTTP date (RFC 9110, 10.2.3); ``None`` when absent
    or unreadable (the backoff then decides)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, (when - now).total_seconds())
