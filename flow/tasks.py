"""Declares the Dramatiq actors ("tasks") on a runtime's broker.

Shared engine queue ``<prefix>.engine``: ``flow.start_workflow`` (a start by name from
any process) and, for messages that reached it instead of their partition's queue
(a sender that does not know the partitions, a message from before partitions
existed), every other engine message, forwarded to its partition's queue.
Activity queue: ``flow.run_activity``. The partition queues are not Dramatiq tasks:
the engine holding each one consumes it itself (:mod:`flow.engine`).

Whether a failed message is retried is decided by :func:`flow.errors.is_retryable`
alone: a database outage is retried with backoff, a malformed message is
dead-lettered (``<queue>.XQ``) at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from flow import messages
from flow.clock import iso, utcnow
from flow.core.start_request import is_workflow_id, parse_start_request
from flow.errors import InvalidInput, is_retryable
from flow.worker.deliveries import DeliveryLimit
from flow.worker.execution import execute
from flow.worker.reporting import DelayedCalls

if TYPE_CHECKING:
    from flow.metrics import EngineMetrics
    from flow.service import WorkflowService
    from flow.settings import Settings

logger = logging.getLogger(__name__)


def _retry_when(max_retries: int):
    def retry_when(retries: int, error: BaseException) -> bool:
        retry = is_retryable(error) and retries < max_retries
        if not retry:
            logger.error(
                "giving up on a message (%s: %s); it goes to the dead-letter queue", type(error).__name__, error
            )
        return retry

    return retry_when


def declare(
    broker: dramatiq.Broker,
    *,
    settings: Settings,
    service: WorkflowService,
    activity_classes: Mapping[str, type],
    metrics: EngineMetrics,
) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare every task on ``broker``; return them by actor name."""
    engine_options: dict[str, Any] = {
        "broker": broker,
        "queue_name": settings.engine_queue,
        # A database or broker outage fails the message; retry it until it is back.
        "retry_when": _retry_when(200),
        "min_backoff": 250,
        "max_backoff": 30_000,
    }
    delayed = DelayedCalls()

    def report(queue_name: str | None, actor_name: str, **kwargs: Any) -> None:
        """Worker -> engine: the only way a worker tells anything."""
        broker.enqueue(messages.message(queue_name or settings.engine_queue, actor_name, **kwargs))

    # -- the shared engine queue ----------------------------------------------------------

    def start_workflow(**fields: Any) -> None:
        current = CurrentMessage.get_current_message()
        if "name" not in fields:
            # The start of a workflow created elsewhere ({"workflow_id": ...}): its
            # partition's engine does it.
            if set(fields) != {"workflow_id"} or not is_workflow_id(fields["workflow_id"]):
                raise InvalidInput("$", "a start message needs a name, or the workflow_id of a created workflow")
            service.forward(current)
            return
        request = parse_start_request(fields, allow_workflow_id=True)
        state, _ = service.start(
            request.name,
            dict(request.input_data),
            workflow_id=request.workflow_id,
            idempotency_key=request.idempotency_key,
            message_id=current.message_id if current else None,
        )
        logger.info("started %s %s from a Dramatiq message", state.name, state.id)

    def forward(**_: Any) -> None:
        service.forward(CurrentMessage.get_current_message())

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
        reply_to: str | None = None,
    ) -> None:
        ids = {"workflow_id": workflow_id, "position": position, "attempt": attempt}
        started_at = utcnow()
        started_report = delayed.schedule(
            settings.started_report_delay_ms / 1000,
            lambda: report(reply_to, messages.RECORD_STARTED, **ids, started_at=iso(started_at)),
        )
        result = execute(
            activity_classes,
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
        metrics.observe_attempt(activity, result.outcome, duration_s)
        report(
            reply_to,
            messages.RECORD_RESULT,
            **ids,
            outcome=result.outcome,
            output=result.output,
            error=result.error,
            started_at=iso(result.started_at),
            finished_at=iso(result.finished_at),
        )

    def report_undeliverable(kwargs: dict[str, Any], error: str) -> None:
        ids = {key: kwargs[key] for key in ("workflow_id", "position", "attempt")}
        report(kwargs.get("reply_to"), messages.RECORD_RESULT, **ids, outcome="TEMPORARY_FAILURE", error=error)

    broker.add_middleware(
        DeliveryLimit(
            actor_name=messages.RUN_ACTIVITY, max_deliveries=settings.max_deliveries, report=report_undeliverable
        )
    )

    tasks = {
        messages.START_WORKFLOW: dramatiq.actor(start_workflow, actor_name=messages.START_WORKFLOW, **engine_options)
    }
    for name in sorted(messages.ENGINE_MESSAGES - {messages.START_WORKFLOW}):
        tasks[name] = dramatiq.actor(forward, actor_name=name, **engine_options)
    tasks[messages.RUN_ACTIVITY] = dramatiq.actor(
        run_activity,
        actor_name=messages.RUN_ACTIVITY,
        broker=broker,
        queue_name=settings.activity_queue,
        # Activity failures are reported as outcomes, not raised; a raise here means
        # the result could not be reported (broker down), so run the attempt again.
        max_retries=20,
        min_backoff=500,
        max_backoff=30_000,
        time_limit=int(settings.activity_time_limit_s * 1000),
    )
    return tasks
