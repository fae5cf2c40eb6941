"""The one clock of the shell: naive UTC, what every timestamp column holds.

The pure core never reads a clock (events carry ``occurred_at``); everything else
that needs "now" calls :func:`utcnow`, and every timestamp that leaves the process
(messages, the API) is written by :func:`iso` in one form: ISO 8601 with ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column holds on both backends."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """Naive UTC -> ``2026-11-28T21:00:00.123456Z`` (None stays None)."""
    return None if value is None else value.isoformat() + "Z"


def parse_iso(value: str | None) -> datetime | None:
    """``iso()``'s output (with or without ``Z``, or any offset) -> naive UTC."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
