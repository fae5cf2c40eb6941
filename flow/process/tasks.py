"""Declares the Dramatiq actors ("tasks") on a runtime's broker.

Shared engine queue ``<prefix>.engine``: ``flow.start_workflow`` (a start by name from
any process) and, for messages that reached it instead of their partition's queue
(a sender that does not know the partitions, a message from before partitions
existed), every other engine message, forwarded to its partition's queue.
Activity queue: ``flow.run_activity``, whose keyword arguments are an
:class:`~flow.wire.attempts.AttemptRequest`. The partition queues are not Dramatiq tasks:
the engine holding each one consumes it itself (:mod:`flow.engine`).

Whether a failed message is retried is decided by :func:`flow.errors.is_retryable`
alone: a database outage is retried with backoff, a malformed message is
dead-lettered (``<queue>.XQ``) at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from flow.clock import utcnow
from flow.core.start_request import is_workflow_id, parse_start_request
from flow.core.vocabulary import Outcome
from flow.errors import InvalidInput, is_retryable
from flow.observability import tracing
from flow.wire import attempts, messages
from flow.worker.cancellations import CancellationListener
from flow.worker.deliveries import DeliveryCounter, DeliveryLimit
from flow.worker.execution import execute
from flow.worker.heartbeats import Heartbeats, interval_for
from flow.worker.reporting import DelayedCalls

if TYPE_CHECKING:
    from flow.observability.metrics import EngineMetrics
    from flow.service.workflows import WorkflowService
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
    counter = DeliveryCounter()

    def report(message: messages.EngineMessage, reply_to: str | None) -> None:
        """Worker -> engine: the only way a worker tells anything. ``reply_to`` is the
        workflow's partition queue; the first release's attempts name none."""
        broker.enqueue(message.to_message(reply_to or settings.engine_queue))

    # -- the shared engine queue ----------------------------------------------------------

    def start_workflow(**fields: Any) -> None:
        current = CurrentMessage.get_current_message()
        if "name" not in fields:
            # The start of a workflow created elsewhere ({"workflow_id": ...}): its
            # partition's engine does it.
            try:
                workflow_id: str | None = messages.StartWorkflow.from_kwargs(fields).workflow_id
            except InvalidInput:
                workflow_id = None
            if not is_workflow_id(workflow_id):
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

    def start_child(**fields: Any) -> None:
        # A parent's engine owes it (docs/design.md, "Sub-workflows"): idempotent, so a
        # redelivery or a re-send from the outbox never makes a second child.
        service.start_child(messages.StartChild.from_kwargs(fields))

    # -- the activity task --------------------------------------------------------------

    def run_activity(**fields: Any) -> None:
        request = attempts.AttemptRequest.from_kwargs(fields)
        started_at = utcnow()
        started_report = delayed.schedule(
            settings.started_report_delay_ms / 1000, lambda: report(request.started(started_at), request.reply_to)
        )
        current = CurrentMessage.get_current_message()
        beating = {"marked": False}

        def send_heartbeat(details: Any) -> None:
            if request.heartbeat_s and current is not None and not beating["marked"]:
                counter.mark_beating(current.message_id)  # see DeliveryLimit
                beating["marked"] = True
            report(request.heartbeat(details), request.reply_to)

        beats = Heartbeats(
            send_heartbeat,
            interval_s=interval_for(request.heartbeat_s),
            delayed=delayed,
            max_bytes=settings.max_payload_bytes,
        )
        attempt = functools.partial(
            execute,
            activity_classes,
            request,
            started_at=started_at,
            max_output_bytes=settings.max_payload_bytes,
            heartbeat=beats.beat,
        )
        result = tracing.run_attempt(request, attempt) if tracing.ENABLED else attempt()
        delayed.cancel(started_report)  # finished quickly: the result says when it started
        beats.close(flush=result.outcome != Outcome.SUCCEEDED)
        if beating["marked"] and current is not None:
            counter.take_beating(current.message_id)
        metrics.observe_attempt(request.activity, result.outcome, result.duration_s)
        report(result, request.reply_to)

    def report_undeliverable(request: attempts.AttemptRequest, error: str) -> None:
        report(request.result(Outcome.TEMPORARY_FAILURE, error=error), request.reply_to)

    broker.add_middleware(
        DeliveryLimit(
            actor_name=messages.RUN_ACTIVITY,
            max_deliveries=settings.max_deliveries,
            report=report_undeliverable,
            counter=counter,
        )
    )

    if not settings.uses_in_process_broker:  # in-process, the engine reaches RUNNING itself
        broker.add_middleware(
            CancellationListener(
                url=settings.broker_url, exchange=settings.cancel_exchange, activity_queue=settings.activity_queue
            )
        )

    tasks = {
        messages.START_WORKFLOW: dramatiq.actor(start_workflow, actor_name=messages.START_WORKFLOW, **engine_options)
    }
    tasks[messages.START_CHILD] = dramatiq.actor(start_child, actor_name=messages.START_CHILD, **engine_options)
    for name in sorted(messages.ENGINE_MESSAGES.keys() - {messages.START_WORKFLOW}):
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
