"""Declares the Dramatiq actors ("tasks") on a runtime's broker.

Engine queue: ``flow.start_workflow``, ``flow.record_started``,
``flow.record_result``, ``flow.retry_due``. Activity queue: ``flow.run_activity``.
Every task is a thin translation from message to call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from flow import messages
from flow.deliveries import DeliveryLimit
from flow.errors import DefinitionNotFound, InvalidInput, UnknownActivity, WorkflowNotFound
from flow.events import ActivityCompleted, ActivityStarted, RetryDue
from flow.execution import execute
from flow.store import utcnow

if TYPE_CHECKING:
    from flow.runtime import Runtime

logger = logging.getLogger(__name__)

#: Errors that no retry can fix: the message is dead-lettered (``<queue>.XQ``) at once.
UNRETRYABLE = (DefinitionNotFound, InvalidInput, UnknownActivity, WorkflowNotFound)


def declare(runtime: Runtime) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare every task on ``runtime.broker``; return them by actor name."""
    settings = runtime.settings
    engine_options: dict[str, Any] = {
        "broker": runtime.broker,
        "queue_name": settings.engine_queue,
        "throws": UNRETRYABLE,
        # A database or broker outage fails the message; retry it until it is back.
        "max_retries": 200,
        "min_backoff": 250,
        "max_backoff": 30_000,
    }

    def start_workflow(workflow_id: str | None = None, name: str | None = None, input_data: Any = None) -> None:
        current = CurrentMessage.get_current_message()
        runtime.engine.on_start_message(
            workflow_id=workflow_id,
            name=name,
            input_data=input_data,
            message_id=current.message_id if current else None,
        )

    def record_started(workflow_id: str, position: int, attempt: int, started_at: str) -> None:
        event = ActivityStarted(position, attempt, occurred_at=messages.parse_timestamp(started_at) or utcnow())
        runtime.engine.handle(workflow_id, event)

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
        runtime.engine.handle(workflow_id, event)

    def retry_due(workflow_id: str, position: int, attempt: int) -> None:
        runtime.engine.handle(workflow_id, RetryDue(position, attempt, occurred_at=utcnow()))

    def run_activity(
        workflow_id: str,
        position: int,
        attempt: int,
        activity: str,
        config: dict[str, Any],
        input_data: dict[str, Any],
        outputs: dict[str, Any],
    ) -> None:
        started_at = utcnow()
        runtime.broker.enqueue(
            messages.engine_message(
                settings,
                messages.RECORD_STARTED,
                workflow_id=workflow_id,
                position=position,
                attempt=attempt,
                started_at=messages.timestamp(started_at),
            )
        )
        result = execute(
            runtime.activity_classes,
            workflow_id=workflow_id,
            position=position,
            attempt=attempt,
            activity=activity,
            config=config,
            input_data=input_data,
            outputs=outputs,
            started_at=started_at,
        )
        runtime.broker.enqueue(
            messages.engine_message(
                settings,
                messages.RECORD_RESULT,
                workflow_id=workflow_id,
                position=position,
                attempt=attempt,
                outcome=result.outcome,
                output=result.output,
                error=result.error,
                started_at=messages.timestamp(result.started_at),
                finished_at=messages.timestamp(result.finished_at),
            )
        )

    def report_undeliverable(kwargs: dict[str, Any], error: str) -> None:
        runtime.broker.enqueue(
            messages.engine_message(
                settings,
                messages.RECORD_RESULT,
                workflow_id=kwargs["workflow_id"],
                position=kwargs["position"],
                attempt=kwargs["attempt"],
                outcome="TEMPORARY_FAILURE",
                error=error,
            )
        )

    runtime.broker.add_middleware(
        DeliveryLimit(
            actor_name=messages.RUN_ACTIVITY, max_deliveries=settings.max_deliveries, report=report_undeliverable
        )
    )

    tasks = {
        messages.START_WORKFLOW: dramatiq.actor(start_workflow, actor_name=messages.START_WORKFLOW, **engine_options),
        messages.RECORD_STARTED: dramatiq.actor(record_started, actor_name=messages.RECORD_STARTED, **engine_options),
        messages.RECORD_RESULT: dramatiq.actor(record_result, actor_name=messages.RECORD_RESULT, **engine_options),
        messages.RETRY_DUE: dramatiq.actor(retry_due, actor_name=messages.RETRY_DUE, **engine_options),
        messages.RUN_ACTIVITY: dramatiq.actor(
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
        ),
    }
    return tasks
