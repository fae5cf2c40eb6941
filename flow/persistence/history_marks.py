"""Bounded history (issue 25; docs/design.md, "The engine's hot path"): the one warning
a workflow gets when its history passes ``FLOW_HISTORY_WARN`` entries.

``workflows.history_length`` is added to by every commit that appends history; the
commit whose additions take it past the mark is the only one that warns, so the line is
logged once per workflow without any state of its own, across restarts and engines."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

LONG_HISTORY = (
    "workflow %s: its history holds %d entries, past FLOW_HISTORY_WARN (%d): every read of it grows "
    "slower; run a batch job as a child workflow per batch (README, Bounded history)"
)


def passed(length: int, added: int, mark: int) -> bool:
    """A commit that added ``added`` entries, leaving ``length``, took the history past ``mark``."""
    return length >= mark > length - added


def warn(workflow_id: str, length: int, mark: int) -> None:
    logger.warning(LONG_HISTORY, workflow_id, length, mark, extra={"workflow_id": workflow_id})


__all__ = ["LONG_HISTORY", "passed", "warn"]
