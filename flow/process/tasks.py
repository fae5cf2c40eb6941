"""Declares the Dramatiq actors ("tasks") on a runtime's broker.

Shared engine queue ``<prefix>.engine``: ``flow.start_workflow`` (a start by name from
any process) and, for messages that reached it instead of their partition's queue
(a sender that does not know the partitions, a message from before partitions
existed), every other engine message, forwarded to its partition's queue.
(:class:`SharedQueueTasks`). Activity queue: ``flow.run_activity``, whose keyword
arguments are an :class:`~flow.wire.attempts.AttemptRequest` (:class:`ActivityTask`,
which reports through a :class:`Reporter`; a test gives it a list instead). The
partition queues are not Dramatiq tasks: the engine holding each one consumes it itself
(:mod:`flow.engine`). :func:`declare` builds these and declares them on a broker.

Whether a failed message is retried is decided by :func:`flow.errors.is_retryable`
alone: a database outage is retried with backoff, a malformed message is
dead-lettered (``<queue>.XQ``) at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from flow.clock import utcnow
from flow.core.event_triggers import parse_event
from flow.core.start_request import is_workflow_id, parse_start_request
from flow.core.vocabulary import Outcome
from flow.errors import BrokerBlocked, InvalidInput, is_retryable
from flow.loops import poll_until
from flow.observability import tracing
from flow.wire import attempts, messages
from flow.worker.cancellations import CancellationListener
from flow.worker.deliveries import DeliveryCounter, DeliveryLimit
from flow.worker.execution import execute
from flow.worker.heartbeats import Heartbeats, interval_for
from flow.worker.reporting import DelayedCalls

if TYPE_CHECKING:
    from flow.observability.metrics import EngineMetrics
    from flow.service.events import EventService
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


def _current_message() -> dramatiq.Message[Any] | None:
    return CurrentMessage.get_current_message()


class Reporter:
    """Worker -> engine: the only way a worker tells anything. ``reply_to`` is the
    workflow's partition queue; the first release's attempts name none (then the shared
    engine queue, which forwards)."""

    def __init__(self, broker: dramatiq.Broker, default_queue: str) -> None:
        self.broker = broker
        self.default_queue = default_queue

    def __repr__(self) -> str:
        return f"<Reporter default={self.default_queue}>"

    def __call__(self, message: messages.EngineMessage, reply_to: str | None) -> None:
        """Send ``message``; while RabbitMQ blocks publishers, wait (and say so) until it
        takes it. Raising would not help: Dramatiq's Retries would publish the attempt
        again (blocked too), fail, and then acknowledge it, its result lost."""
        sent = message.to_message(reply_to or self.default_queue)

        def send() -> bool:
            try:
                self.broker.enqueue(sent)
            except BrokerBlocked as e:
                logger.warning("%s for workflow %s waits: %s", sent.actor_name, message.workflow_id, e)
                return False
            return True

        poll_until(send, timeout_s=None, every_s=0.5, max_every_s=5.0, what=f"RabbitMQ to take {sent.actor_name}")


class ActivityTask:
    """``flow.run_activity``: run one attempt and report it (docs/design.md, "One workflow,
    message by message", step 4).

    A "started" report only once the attempt has run for ``started_report_delay_s`` (a
    quick attempt's result says when it started: :mod:`flow.worker.reporting`), the
    activity's heartbeats throttled (:mod:`flow.worker.heartbeats`), and a heartbeating
    attempt marked in ``counter`` so that a redelivered copy is not run again
    (:class:`~flow.worker.deliveries.DeliveryLimit`). Everything it sends goes through
    ``report``, so a test runs it with a list for a broker."""

    def __init__(
        self,
        activity_classes: Mapping[str, type],
        report: Callable[[messages.EngineMessage, str | None], None],
        *,
        metrics: EngineMetrics,
        max_payload_bytes: int,
        started_report_delay_s: float,
        delayed: DelayedCalls | None = None,
        counter: DeliveryCounter | None = None,
        current_message: Callable[[], dramatiq.Message[Any] | None] = _current_message,
    ) -> None:
        self.activity_classes = activity_classes
        self.report = report
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.started_report_delay_s = started_report_delay_s
        self.delayed = delayed or DelayedCalls()
        self.counter = counter or DeliveryCounter()
        self.current_message = current_message

    def __repr__(self) -> str:
        return f"<ActivityTask {len(self.activity_classes)} activity classes>"

    def on_message(self, **fields: Any) -> None:
        """The Dramatiq actor's function: the message's keyword arguments are an
        :class:`~flow.wire.attempts.AttemptRequest`."""
        current = self.current_message()
        try:
            request = attempts.AttemptRequest.from_kwargs(fields)
        except InvalidInput as e:
            self.report_unreadable(fields, e, message_id=current.message_id if current else None)
            return
        if current is None:
            self.run(request)
        else:
            self.run(request, message_id=current.message_id, sent_ms=current.message_timestamp)

    def run(
        self, request: attempts.AttemptRequest, *, message_id: str | None = None, sent_ms: float | None = None
    ) -> attempts.AttemptResult:
        """Run the attempt ``request`` asks for (``sent_ms``: when its message was sent, ms
        since the epoch), report its result and return it."""
        started_at = utcnow()
        started_report = self.delayed.schedule(
            self.started_report_delay_s, lambda: self.report(request.started(started_at), request.reply_to)
        )
        beating = _Beating(self, request, message_id)
        beats = Heartbeats(
            beating.send,
            interval_s=interval_for(request.heartbeat_s),
            delayed=self.delayed,
            max_bytes=self.max_payload_bytes,
        )
        attempt = functools.partial(
            execute,
            self.activity_classes,
            request,
            started_at=started_at,
            max_output_bytes=self.max_payload_bytes,
            heartbeat=beats.beat,
            sent_ms=sent_ms,
        )
        result = tracing.run_attempt(request, attempt) if tracing.ENABLED else attempt()
        self.delayed.cancel(started_report)  # finished quickly: the result says when it started
        beats.close(flush=result.outcome != Outcome.SUCCEEDED)
        beating.done()
        self.metrics.observe_attempt(request.activity, result.outcome, result.duration_s)
        self.report(result, request.reply_to)
        return result

    def report_undeliverable(self, attempt: attempts.AttemptIdentity, error: str) -> None:
        """An attempt whose deliveries ran out (:class:`~flow.worker.deliveries.DeliveryLimit`)."""
        self.report(attempt.failed(error), attempt.reply_to)

    def report_unreadable(self, fields: Mapping[str, Any], error: InvalidInput, *, message_id: str | None) -> None:
        """An attempt message this worker cannot read (a newer engine's field, a value out
        of range): reported at once as a temporary failure of the attempt it names, then
        acknowledged, since no redelivery makes it readable. Raises ``error`` (the message
        is dead-lettered at once) if even the attempt it names cannot be read."""
        try:
            attempt = attempts.AttemptIdentity.read(fields)
        except InvalidInput as unknown:
            logger.error(
                "activity message %s cannot be read (%s), nor which attempt it is (%s); it names workflow %.80r "
                "and has the fields %.300s: dead-lettered, nobody is told",
                message_id,
                error,
                unknown,
                fields.get("workflow_id") if isinstance(fields, Mapping) else None,
                ", ".join(sorted(map(str, fields))) if isinstance(fields, Mapping) else type(fields).__name__,
            )
            raise error from None
        self.report(attempt.failed(attempts.unreadable_error(error)), attempt.reply_to)
        logger.error(
            "workflow %s: attempt %d of step %d (message %s) cannot be read by this worker (%s); "
            "reported to the engine as a temporary failure and dropped",
            attempt.workflow_id,
            attempt.attempt,
            attempt.position,
            message_id,
            error,
        )


class _Beating:
    """One attempt's heartbeats on their way out; the first marks its message as
    heartbeating (see :class:`~flow.worker.deliveries.DeliveryLimit`)."""

    def __init__(self, task: ActivityTask, request: attempts.AttemptRequest, message_id: str | None) -> None:
        self.task, self.request, self.message_id = task, request, message_id
        self.marked = False

    def send(self, details: Any) -> None:
        if self.request.heartbeat_s and self.message_id is not None and not self.marked:
            self.task.counter.mark_beating(self.message_id)
            self.marked = True
        self.task.report(self.request.heartbeat(details), self.request.reply_to)

    def done(self) -> None:
        if self.marked and self.message_id is not None:
            self.task.counter.take_beating(self.message_id)


class SharedQueueTasks:
    """The tasks of the shared engine queue: a start by name (or of a workflow created
    elsewhere), a child's start, and every other engine message, forwarded."""

    def __init__(
        self,
        service: WorkflowService,
        *,
        current_message: Callable[[], dramatiq.Message[Any] | None] = _current_message,
    ) -> None:
        self.service = service
        self.current_message = current_message

    def __repr__(self) -> str:
        return f"<SharedQueueTasks {self.service!r}>"

    def start_workflow(self, **fields: Any) -> None:
        current = self.current_message()
        if "name" not in fields:
            # The start of a workflow created elsewhere ({"workflow_id": ...}): its
            # partition's engine does it.
            try:
                workflow_id: str | None = messages.StartWorkflow.from_kwargs(fields).workflow_id
            except InvalidInput:
                workflow_id = None
            if not is_workflow_id(workflow_id):
                raise InvalidInput("$", "a start message needs a name, or the workflow_id of a created workflow")
            self.service.forward(self._message(current))
            return
        request = parse_start_request(fields, allow_workflow_id=True)
        state, _ = self.service.start(
            request.name,
            dict(request.input_data),
            workflow_id=request.workflow_id,
            idempotency_key=request.idempotency_key,
            message_id=current.message_id if current else None,
            priority=request.priority,
            attributes=request.attributes,
        )
        logger.info("started %s %s from a Dramatiq message", state.name, state.id)

    def forward(self, **_: Any) -> None:
        self.service.forward(self._message(self.current_message()))

    @staticmethod
    def _message(current: dramatiq.Message[Any] | None) -> dramatiq.Message[Any]:
        """The message being handled: forwarding sends that very message on."""
        if current is None:  # only outside a worker, where CurrentMessage has nothing
            raise RuntimeError("no current message to forward: is dramatiq's CurrentMessage middleware installed?")
        return current

    def start_child(self, **fields: Any) -> None:
        # A parent's engine owes it (docs/design.md, "Sub-workflows"): idempotent, so a
        # redelivery or a re-send from the outbox never makes a second child.
        self.service.start_child(messages.StartChild.from_kwargs(fields))


def send_event(events: EventService, **fields: Any) -> None:
    """``flow.send_event``: an event for the triggers, read as strictly as ``POST /events``
    reads it (a malformed one is dead-lettered at once); a redelivery is a resent id."""
    received = events.send(parse_event(fields))
    logger.info(
        "event %s (%s) from a Dramatiq message: %s",
        received.event.id,
        received.event.type,
        "a resend, nothing started"
        if received.duplicate
        else f"{len(received.event.outcome.get('matched', []))} matched",
    )


def declare(
    broker: dramatiq.Broker,
    *,
    settings: Settings,
    service: WorkflowService,
    activity_classes: Mapping[str, type],
    metrics: EngineMetrics,
    events: EventService | None = None,
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
    counter = DeliveryCounter()
    activity = ActivityTask(
        activity_classes,
        Reporter(broker, settings.engine_queue),
        metrics=metrics,
        max_payload_bytes=settings.max_payload_bytes,
        started_report_delay_s=settings.started_report_delay_ms / 1000,
        counter=counter,
    )
    shared = SharedQueueTasks(service)

    broker.add_middleware(
        DeliveryLimit(
            actor_name=messages.RUN_ACTIVITY,
            max_deliveries=settings.max_deliveries,
            report=activity.report_undeliverable,
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
        messages.START_WORKFLOW: dramatiq.actor(actor_name=messages.START_WORKFLOW, **engine_options)(
            shared.start_workflow
        )
    }
    tasks[messages.START_CHILD] = dramatiq.actor(actor_name=messages.START_CHILD, **engine_options)(shared.start_child)
    if events is not None:
        tasks[messages.SEND_EVENT] = dramatiq.actor(actor_name=messages.SEND_EVENT, **engine_options)(
            functools.partial(send_event, events)
        )
    for name in sorted(messages.ENGINE_MESSAGES.keys() - {messages.START_WORKFLOW}):
        tasks[name] = dramatiq.actor(actor_name=name, **engine_options)(shared.forward)
    tasks[messages.RUN_ACTIVITY] = dramatiq.actor(
        actor_name=messages.RUN_ACTIVITY,
        broker=broker,
        queue_name=settings.activity_queue,
        # Activity failures are reported as outcomes, not raised; a raise here means
        # the result could not be reported (broker down), so run the attempt again. A
        # message that names no attempt it can read raises InvalidInput: dead-lettered at once.
        retry_when=_retry_when(20),
        min_backoff=500,
        max_backoff=30_000,
        time_limit=int(settings.activity_time_limit_s * 1000),
    )(activity.on_message)
    return tasks
