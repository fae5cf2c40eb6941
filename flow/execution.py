"""Running one activity attempt in a worker: build it, call ``do_activity()``, report.

Everything comes from the message; nothing here touches the database. Whatever
happens inside the activity becomes one of the three outcomes, with the error (and
traceback) recorded, so a broken activity fails its attempt instead of its worker.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dramatiq.middleware import TimeLimitExceeded

from activities.base import BaseActivity
from activities.discovery import resolve
from flow.errors import UnknownActivity
from flow.events import OUTCOMES
from flow.store import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptResult:
    outcome: str
    output: Any
    error: str | None
    started_at: datetime
    finished_at: datetime


def execute(
    classes: Mapping[str, type[BaseActivity]],
    *,
    workflow_id: str,
    position: int,
    attempt: int,
    activity: str,
    config: Mapping[str, Any],
    input_data: Mapping[str, Any],
    outputs: Mapping[str, Any],
    started_at: datetime | None = None,
) -> AttemptResult:
    """Run one attempt and describe how it ended; never raises for activity errors."""
    started_at = started_at or utcnow()

    def ended(outcome: str, output: Any = None, error: str | None = None) -> AttemptResult:
        return AttemptResult(outcome, output, error, started_at, utcnow())

    try:
        cls = resolve(dict(classes), activity)
    except UnknownActivity as e:
        return ended("PERMANENT_FAILURE", error=str(e))
    instance = cls(
        workflow_id=workflow_id,
        input_data=input_data,
        config=config,
        attempt=attempt,
        position=position,
        outputs=outputs,
    )
    try:
        outcome = instance.do_activity()
    except TimeLimitExceeded:
        return ended("TEMPORARY_FAILURE", error="the attempt exceeded its time limit and was stopped")
    except Exception:
        instance.logger.warning("do_activity raised", exc_info=True)
        return ended("TEMPORARY_FAILURE", error=traceback.format_exc(limit=20))
    if outcome not in OUTCOMES:
        return ended(
            "PERMANENT_FAILURE",
            error=f"{activity}.do_activity() returned {outcome!r}; "
            "return self.SUCCEEDED, self.TEMPORARY_FAILURE or self.PERMANENT_FAILURE",
        )
    try:
        json.dumps(instance.output)
    except (TypeError, ValueError) as e:
        return ended("PERMANENT_FAILURE", error=f"{activity}.output is not JSON-serialisable: {e}")
    return ended(outcome, instance.output, None if outcome == "SUCCEEDED" else instance.error)
