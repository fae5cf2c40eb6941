"""The one timestamp form on the wire and in the API: ISO 8601 in UTC with ``Z``.

Every timestamp inside the process is a naive UTC ``datetime`` (what both database
backends' columns hold); :func:`iso` writes one for a message, the history or the
API, and :func:`parse_iso` reads one back. Formatting reads no clock, so the pure
core uses these too; the shell's clock is :func:`flow.clock.utcnow`.
"""

from __future__ import annotations

from datetime import UTC, datetime


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
