"""The one clock of the shell: naive UTC, what every timestamp column holds.

The pure core never reads a clock (events carry ``occurred_at``); everything else
that needs "now" calls :func:`utcnow`. The form a timestamp takes when it leaves
the process is :mod:`flow.core.timestamps`'.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column holds on both backends."""
    return datetime.now(UTC).replace(tzinfo=None)
