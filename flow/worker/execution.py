"""Running one activity attempt in a worker: build it, call ``do_activity()``, report.

Everything comes from the message (:class:`~flow.wire.attempts.AttemptRequest`) and goes
back in one (:class:`~flow.wire.messages.AttemptResult`); nothing here touches the
database. Whatever happens inside the activity becomes one of the three outcomes,
with the error (and traceback) recorded, so a broken activity fails its attempt
instead of its worker.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from dramatiq.middleware import TimeLimitExceeded
from dramatiq.threading import Interrupt

from activities.base import ActivityCancelled, BaseActivity
from activities.discovery import resolve
from flow.clock import utcnow
from flow.core import strict_json
from flow.core.attributes import to_wire
from flow.core.vocabulary import Outcome
from flow.errors import InvalidJson, UnknownActivity
from flow.wire.attempts import AttemptRequest
from flow.wire.messages import AttemptResult
from flow.worker.deadlines import Deadlines
from flow.worker.running import RUNNING

logger = logging.getLogger(__name__)


class ActivityTimeout(Interrupt):
    """Raised inside ``do_activity`` when its ``start_to_close_s`` has passed.

    An interrupt (a ``BaseException``) so that an activity's own ``except Exception``
    cannot swallow it. Like Dramatiq's time limit it is delivered between Python
    bytecodes: a long blocking C call (``time.sleep``, a socket read without a
    timeout) ends first. The engine's start-to-close timer fails the attempt anyway.
    """


#: Why an attempt sent before the newest cancel notice its worker forgot did not start.
_UNSURE = "not started: sent before cancel notices this worker no longer remembers; sent again if its run goes on"

#: Start-to-close deadlines of the attempts running in this process (one watchdog).
DEADLINES = Deadlines(ActivityTimeout)


def execute(
    classes: Mapping[str, type[BaseActivity]],
    request: AttemptRequest,
    *,
    started_at: datetime | None = None,
    max_output_bytes: int | None = None,
    heartbeat: Callable[[Any], None] | None = None,
    sent_ms: float | None = None,
) -> AttemptResult:
    """Run the attempt ``request`` asks for and report how it ended (stopped after its
    ``start_to_close_s``; ``Cancelled`` if the engine said to stop and the activity's
    heartbeat raised it); never raises for activity errors. ``heartbeat`` sends the
    activity's heartbeats (throttled: :mod:`flow.worker.heartbeats`); ``sent_ms``: when the
    attempt's message was sent (ms since the epoch), judged against forgotten cancel notices."""
    started_at = started_at or utcnow()
    activity, time_limit_s = request.activity, request.start_to_close_s
    instance: BaseActivity | None = None

    def ended(outcome: Outcome, output: Any = None, error: Any = None) -> AttemptResult:
        # What the activity set goes with every outcome: "stage: payment refused" too.
        attributes = to_wire(instance.attributes_set) if instance is not None else None
        return request.result(
            outcome,
            output=output,
            error=_storable_text(error),
            started_at=started_at,
            finished_at=utcnow(),
            attributes=attributes,
        )

    try:
        cls = resolve(dict(classes), activity)
    except UnknownActivity as e:
        return ended(Outcome.PERMANENT_FAILURE, error=str(e))
    instance = cls.from_request(request)
    instance._beat = heartbeat
    key = (request.workflow_id, request.position, request.attempt)
    instance._cancel = RUNNING.start(key, sent_ms=sent_ms)
    if instance.cancelled:
        # Told to stop before it started (it waited in the queue): never started, so the
        # slot of a limit its run's end gave back is not taken again (docs/design.md). Or
        # sent before notices this worker forgot: a run that goes on sends it again.
        RUNNING.finish(key, instance._cancel)
        if RUNNING.remembers(key):
            return ended(Outcome.CANCELLED, error="cancelled before it started")
        return ended(Outcome.CANCELLED, error=_UNSURE)
    deadline = DEADLINES.register() if time_limit_s else None
    try:
        try:
            if deadline is not None and time_limit_s:
                DEADLINES.arm(deadline, time_limit_s)  # it can fire from here on, inside the try
            outcome = instance.do_activity()
        finally:
            RUNNING.finish(key, instance._cancel)
            if deadline is not None:
                # Raises ActivityTimeout if the watchdog got there first; afterwards
                # it can no longer fire for this attempt.
                DEADLINES.finish(deadline)
    except ActivityCancelled as e:
        if instance.cancelled:
            return ended(Outcome.CANCELLED, error=f"cancelled: {e}" if str(e) else "cancelled")
        # Raised by the activity itself, not asked for: a failure like any exception.
        return ended(Outcome.TEMPORARY_FAILURE, error=traceback.format_exc(limit=20))
    except ActivityTimeout:
        return ended(Outcome.TEMPORARY_FAILURE, error=f"start-to-close timeout: stopped after {time_limit_s} s")
    except TimeLimitExceeded:
        return ended(Outcome.TEMPORARY_FAILURE, error="stopped by the worker's time limit (FLOW_ACTIVITY_TIME_LIMIT_S)")
    except Exception as e:
        instance.logger.warning("do_activity raised", exc_info=True)
        failure = (
            Outcome.PERMANENT_FAILURE if isinstance(e, cls.non_retryable_exceptions) else Outcome.TEMPORARY_FAILURE
        )
        return ended(failure, error=traceback.format_exc(limit=20))
    try:
        outcome = Outcome(outcome)
    except ValueError:
        return ended(
            Outcome.PERMANENT_FAILURE,
            error=f"{activity}.do_activity() returned {outcome!r}; "
            "return self.SUCCEEDED, self.TEMPORARY_FAILURE or self.PERMANENT_FAILURE",
        )
    try:
        # Strict, as every input is: NaN, NUL or a lone surrogate in an output would be
        # stored and then break every reader of the workflow.
        strict_json.check(instance.output, path="output")
        size = len(json.dumps(instance.output))
    except (InvalidJson, TypeError, ValueError) as e:
        return ended(Outcome.PERMANENT_FAILURE, error=f"{activity}.output is not JSON-serialisable: {e}")
    if max_output_bytes is not None and size > max_output_bytes:
        return ended(
            Outcome.PERMANENT_FAILURE,
            error=f"{activity}.output is {size} bytes of JSON, over the limit of {max_output_bytes} "
            "(FLOW_MAX_PAYLOAD_BYTES)",
        )
    return ended(outcome, instance.output, None if outcome is Outcome.SUCCEEDED else instance.error)


def _storable_text(error: Any) -> str | None:
    """An attempt's error as text the database and every reader accept: an activity
    may set anything as ``self.error``, and an exception message may hold a NUL."""
    if error is None:
        return None
    text = error if isinstance(error, str) else str(error)
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
