"""Bulk operations, the pure part: what a batch asks (``POST /batches``), the words of
its life, and the arithmetic its engine does — how many workflows a pass may handle
under the batch's rate, and where the next page starts (docs/design.md, "Bulk
operations").

A batch is a request to cancel, retry or rerun every workflow that matches a
:class:`~flow.core.workflow_filter.WorkflowFilter` and was created before the batch.
The engine holding ``partition_of(batch id)`` pages through them oldest first, by the
keyset ``(created_at, id)``, records each workflow's outcome with the batch (the record
is what makes a replayed page do nothing twice) and sends the workflows their controls,
at most ``FLOW_BATCH_RATE`` a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flow.core import validation
from flow.core.workflow_filter import SCHEMA as FILTER_SCHEMA
from flow.core.workflow_filter import WorkflowFilter, parse_filter
from flow.errors import InvalidInput


class BatchOperation(StrEnum):
    """What a batch does to each workflow it matches."""

    CANCEL = "cancel"
    RETRY = "retry"
    RERUN = "rerun"


class BatchStatus(StrEnum):
    """Where a batch is."""

    #: Its engine pages through the matching workflows.
    RUNNING = "running"
    #: Asked to stop: its engine records what it had sent and stops.
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    #: Every matching workflow has its outcome.
    FINISHED = "finished"

    @property
    def ended(self) -> bool:
        return self in (BatchStatus.CANCELLED, BatchStatus.FINISHED)


class Outcome(StrEnum):
    """What became of one workflow of a batch."""

    #: Recorded, its control not yet sent (or not yet known to be): a resumed batch
    #: sends it again, which the control's idempotency makes harmless.
    PENDING = "pending"
    #: The control was sent (or had taken effect already).
    DONE = "done"
    #: The control was refused for a reason a retry would not change.
    FAILED = "failed"
    #: The workflow no longer qualified (it ended, was retried meanwhile, is a child...).
    SKIPPED = "skipped"


#: The ``rerun`` options (passed to the rerun of each workflow).
RERUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["from"],
    "description": 'an object: {"from": activity id, "version": n, "input_data": {...}}',
    # The limits and wording of POST /workflows/{id}/rerun (api/resources/rerun.py): the
    # validator's message is "must be <description>".
    "properties": {
        "from": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "the id of the step (or map item, `fetch[3]`) to rerun each workflow from, "
            "1 to 200 characters",
        },
        "version": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647,
            "description": "a version of the workflows' definition (an integer from 1), to run them on",
        },
        "input_data": {"type": "object", "description": "a JSON object: the new runs' input"},
    },
}

#: The most batches running (or cancelling) at once, in the whole deployment: each is
#: paced at ``FLOW_BATCH_RATE``, so their number multiplies the work asked of the engines.
MAX_LIVE_BATCHES = 20

#: Longest ``created_by``.
MAX_CREATED_BY = 128

#: The body of ``POST /batches``.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["operation", "filter"],
    "properties": {
        "operation": {
            "type": "string",
            "enum": [o.value for o in BatchOperation],
            "description": "one of cancel, retry, rerun",
        },
        "filter": FILTER_SCHEMA,
        "rerun": RERUN_SCHEMA,
        "created_by": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CREATED_BY,
            "description": f"a string of 1 to {MAX_CREATED_BY} characters: who asks (shown with the batch)",
        },
    },
    "examples": [{"operation": "retry", "filter": {"status": "Failed", "name": "Orders"}}],
}
_VALIDATOR = validation.validator(SCHEMA)


@dataclass(frozen=True)
class BatchRequest:
    """A checked ``POST /batches`` body."""

    operation: BatchOperation
    filter: WorkflowFilter
    #: The rerun options (``rerun`` only): ``from``, and optionally ``version`` and ``input_data``.
    rerun: Mapping[str, Any] | None = None
    created_by: str | None = None


def parse_batch_request(body: Any) -> BatchRequest:
    """A :class:`BatchRequest`, or :class:`InvalidInput` naming the first wrong field."""
    validation.check(_VALIDATOR, body)
    operation = BatchOperation(body["operation"])
    rerun = body.get("rerun")
    if operation is BatchOperation.RERUN and rerun is None:
        raise InvalidInput("$.rerun", 'required for a rerun: {"from": "<activity id>"}')
    if operation is not BatchOperation.RERUN and rerun is not None:
        raise InvalidInput("$.rerun", f"only a rerun takes rerun options, not a {operation}")
    return BatchRequest(
        operation=operation,
        filter=parse_filter(body["filter"], prefix="$.filter."),
        rerun=rerun,
        created_by=body.get("created_by"),
    )


# -- pacing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """How many workflows a pass may handle now, and the pacing time to keep.

    ``paced_until`` is the theoretical time at which the workflows handled so far were
    all due (GCRA: one timestamp per batch). It never lags ``now`` by more than
    ``window_s``, so an idle or new batch starts with at most ``rate × window_s``.
    """

    allowed: int
    paced_until: datetime


def pace(paced_until: datetime | None, now: datetime, *, rate_per_s: float, window_s: float) -> Pace:
    """Workflows due by ``now`` at ``rate_per_s`` (the caller handles up to that many and
    then calls :func:`paced`)."""
    floor = now - timedelta(seconds=window_s)
    start = floor if paced_until is None or paced_until < floor else paced_until
    allowed = max(0, math.floor((now - start).total_seconds() * rate_per_s + 1e-9))
    return Pace(allowed, start)


def paced(start: datetime, handled: int, *, rate_per_s: float) -> datetime:
    """The pacing time after ``handled`` workflows from ``start``."""
    return start + timedelta(seconds=handled / rate_per_s)


# -- paging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A page of matching workflows, oldest first: ``(created_at, id)`` each."""

    keys: tuple[tuple[datetime, str], ...]
    #: The most the query asked for.
    asked: int

    @property
    def last(self) -> bool:
        """No more matching workflows after this page (a short page is the last)."""
        return len(self.keys) < self.asked

    @property
    def cursor(self) -> tuple[datetime, str] | None:
        """Where the next page starts (after this key); None for an empty page."""
        return self.keys[-1] if self.keys else None


@dataclass(frozen=True)
class Counts:
    """A batch's progress."""

    matched: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def pending(self) -> int:
        return self.matched - self.done - self.failed - self.skipped

    def settled(self, outcomes: Mapping[str, Outcome]) -> Counts:
        """These counts after pending workflows were settled with ``outcomes``."""
        tally = {o: 0 for o in Outcome}
        for outcome in outcomes.values():
            tally[outcome] += 1
        return Counts(
            self.matched,
            self.done + tally[Outcome.DONE],
            self.failed + tally[Outcome.FAILED],
            self.skipped + tally[Outcome.SKIPPED],
        )


__all__ = [
    "MAX_LIVE_BATCHES",
    "SCHEMA",
    "BatchOperation",
    "BatchRequest",
    "BatchStatus",
    "Counts",
    "Outcome",
    "Pace",
    "Page",
    "pace",
    "paced",
    "parse_batch_request",
]
