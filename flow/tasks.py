"""Declares the Dramatiq actors ("tasks") on a runtime's broker.

Engine queue: ``flow.start_workflow``, ``flow.record_started``, ``flow.record_result``,
``flow.timer_fired``, ``flow.cancel_workflow``, ``flow.retry_workflow``. Activity
queue: ``flow.run_activity``. Every task is a thin translation from message to call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from flow import messages
from flow.deliveries import DeliveryLimit
from flow.errors import DefinitionNotFound, InvalidInput, UnknownActivity, WorkflowNotFound
from flow.events import (
    TIMER_KINDS,
    ActivityCompleted,
    ActivityStarted,
    CancelRequested,
    RetryRequested,
    TimerFired,
)
from flow.execution import execute
from flow.reporting import DelayedCalls
from flow.store import utcnow

if TYPE_CHECKING:
    from flow.runtime import Runtime

logger = logging.getLogger(__name__)

#: Errors that no retry can fix: the message is dead-lettered (``<queue>.XQ``) at once.
UNRETRYABLE = (DefinitionNotFound, InvalidInput, UnknownActivity, WorkflowNotFound)


def declare(runtime: Runtime) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare every task on ``runtime.broker``; return them by actor name."""
    settings = runtime.settings
    engine = runtime.engine
    engine_options: dict[str, Any] = {
        "broker": runtime.broker,
        "queue_name": settings.engine_queue,
        "throws": UNRETRYABLE,
        # A database or broker outage fails the message; retry it until it is back.
        "max_retries": 200,
        "min_backoff": 250,
        "max_backoff": 30_000,
    }

    delayed = DelayedCalls()

    def report(actor_name: str, **kwargs: Any) -> None:
        """Worker -> engine: the only way a worker tells anything."""
        runtime.broker.enqueue(messages.engine_message(settings, actor_name, **kwargs))

    # -- engine tasks -----------------------------------------------------------------

    def start_workflow(
        workflow_id: str | None = None,
        name: str | None = None,
        input_data: Any = None,
        idempotency_key: str | None = None,
    ) -> None:
        current = CurrentMessage.get_current_message()
        engine.on_start_message(
            workflow_id=workflow_id,
            name=name,
            input_data=input_data,
            idempotency_key=idempotency_key,
            message_id=current.message_id if current else None,
        )

    def record_started(workflow_id: str, position: int, attempt: int, started_at: str) -> None:
        event = ActivityStarted(position, attempt, occurred_at=messages.parse_timestamp(started_at) or utcnow())
        engine.handle(workflow_id, event)

    def record_result(
        workflow_id: str,
        position: int,
        attempt: int,
        outcome: str,
        output: Any = None,
        error: str | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> None:
        event = ActivityCompleted(
            position,
            attempt,
            outcome,  # type: ignore[arg-type]
            occurred_at=utcnow(),
            output=output,
            error=error,
            started_at=messages.parse_timestamp(started_at),
            finished_at=messages.parse_timestamp(finished_at),
        )
        engine.handle(workflow_id, event)

    def timer_fired(workflow_id: str, kind: str, position: int | None, attempt: int) -> None:
        if kind not in TIMER_KINDS:
            raise InvalidInput("$.kind", f"unknown timer kind {kind!r}")
        engine.handle(workflow_id, TimerFired(kind, position, attempt, occurred_at=utcnow()))

    def cancel_workflow(workflow_id: str, reason: str | None = None) -> None:
        engine.handle(workflow_id, CancelRequested(occurred_at=utcnow(), reason=reason))

    def retry_workflow(workflow_id: str) -> None:
        engine.handle(workflow_id, RetryRequested(occurred_at=utcnow()))

    # -- the activity task --------------------------------------------------------------

    def run_activity(
        workflow_id: str,
        position: int,
        attempt: int,
        activity: str,
        config: dict[str, Any],
        input_data: dict[str, Any],
        outputs: dict[str, Any],
        start_to_close_s: float | None = None,
    ) -> None:
        ids = {"workflow_id": workflow_id, "position": position, "attempt": attempt}
        started_at = utcnow()
        started_report = delayed.schedule(
            settings.started_report_delay_ms / 1000,
            lambda: report(messages.RECORD_STARTED, **ids, started_at=messages.timestamp(started_at)),
        )
        result = execute(
            runtime.activity_classes,
            **ids,
            activity=activity,
            config=config,
            input_data=input_data,
            outputs=outputs,
            started_at=started_at,
            max_output_bytes=settings.max_payload_bytes,
            time_limit_s=start_to_close_s,
        )
        delayed.cancel(started_report)  # finished quickly: the result says when it started
        duration_s = (result.finished_at - result.started_at).total_seconds()
        runtime.metrics.observe_attempt(activity, result.outcome, duration_s)
        report(
            messages.RECORD_RESULT,
            **ids,
            outcome=result.outcome,
            output=result.output,
            error=result.error,
            started_at=messages.timestamp(result.started_at),
            finished_at=messages.timestamp(result.finished_at),
        )

    def report_undeliverable(kwargs: dict[str, Any], error: str) -> None:
        ids = {key: kwargs[key] for key in ("workflow_id", "position", "attempt")}
        report(messages.RECORD_RESULT, **ids, outcome="TEMPORARY_FAILURE", error=error)

    runtime.broker.add_middleware(
        DeliveryLimit(
            actor_name=messages.RUN_ACTIVITY, max_deliveries=settings.max_deliveries, report=report_undeliverable
        )
    )

    engine_tasks = {
        messages.START_WORKFLOW: start_workflow,
        messages.RECORD_STARTED: record_started,
        messages.RECORD_RESULT: record_result,
        messages.TIMER_FIRED: timer_fired,
        messages.CANCEL_WORKFLOW: cancel_workflow,
        messages.RETRY_WORKFLOW: retry_workflow,
    }
    tasks = {name: dramatiq.actor(fn, actor_name=name, **engine_options) for name, fn in engine_tasks.items()}
    tasks[messages.RUN_ACTIVITY] = dramatiq.actor(
        run_activity,
        actor_name=messages.RUN_ACTIVITY,
        broker=runtime.broker,
        queue_name=settings.activity_queue,
        # Activity failures are reported as outcomes, not raised; a raise here means
        # the result could not be reported (broker down), so run the attempt again.
        max_retries=20,
        min_backoff=500,
        max_backoff=30_000,
        time_limit=int(settings.activity_time_limit_s * 1000),
    )
    return tasks
