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
    """``iso()``'s output (with or without ``Z``, or any offset) -> naive UTC.

    :class:`ValueError` for anything else, including what a hostile client may decode
    from JSON (not text) and a time that leaves the years 1 to 9999 once moved to UTC
    (``0001-01-01T00:00:00+05:00``; Python raises OverflowError, which no caller maps)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not ISO 8601 text: {value!r:.64}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError as e:
            raise ValueError(f"{value!r:.64} is outside the years 1 to 9999 in UTC") from e
    return parsed
