"""What the starting side sends the engine: each request about a workflow is a message to
its partition's queue (docs/design.md, "Partitions, leases and fencing"). Nothing here
reads the workflow or checks a precondition: the doors do that first
(:mod:`flow.service.controls`), and the engine's ``decide()`` has the last word."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq

from flow.core.partitions import partition_of, partition_queue
from flow.persistence.schema import check_partitions
from flow.persistence.store import Store
from flow.service.checks import check_payload
from flow.settings import Settings
from flow.wire import messages

logger = logging.getLogger(__name__)

#: Namespace for ids derived from a message's id or an idempotency key, so that a
#: redelivered start finds the workflow it created, and a repeated signal is one signal.
MESSAGE_NAMESPACE = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")


def signal_id_of(workflow_id: str, name: str, idempotency_key: str | None) -> str:
    """A signal's id: the same for the same idempotency key, else new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{workflow_id}:{name}:{idempotency_key}"))


class Senders:
    """The engine messages of the starting side, each to its workflow's partition queue."""

    def __init__(self, settings: Settings, store: Store, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self._partitions: int | None = None

    def __repr__(self) -> str:
        return f"<Senders {type(self.broker).__name__} prefix={self.settings.queue_prefix}>"

    @property
    def partitions(self) -> int:
        """The partition count fixed in the database (read once)."""
        if self._partitions is None:
            self._partitions = check_partitions(self.store.partitions(), self.settings.partitions)
        return self._partitions

    def partition_of(self, workflow_id: str) -> int:
        return partition_of(workflow_id, self.partitions)

    def queue_of(self, workflow_id: str) -> str:
        """The partition queue of ``workflow_id``."""
        return partition_queue(self.settings.queue_prefix, self.partition_of(workflow_id))

    def check_unblocked(self) -> None:
        """Raise :class:`~flow.errors.BrokerBlocked` while this process's broker refuses to
        publish (RabbitMQ blocked it: a memory or disk alarm), so that a door can refuse a
        start before it stores anything (:class:`flow.process.broker.BlockedPublishes`)."""
        blocked = getattr(self.broker, "blocked", None)  # the in-process broker is never blocked
        if blocked is not None:
            blocked.check()

    def send(self, message: messages.EngineMessage) -> None:
        """Publish ``message`` to its workflow's partition queue."""
        self.broker.enqueue(message.to_message(self.queue_of(message.workflow_id)))

    def send_start(self, workflow_id: str) -> None:
        """Tell the engine to start a created workflow (should the publish be lost, the
        engine holding its partition finds it unstarted and starts it anyway)."""
        try:
            self.send(messages.StartWorkflow(workflow_id=workflow_id))
        except Exception as e:
            logger.error(
                "publishing the start of workflow %s failed (%s); its engine will start it within FLOW_OUTBOX_GRACE_S",
                workflow_id,
                e,
            )

    def cancel(self, workflow_id: str, reason: str | None = None) -> None:
        """Ask the engine to cancel a workflow."""
        self.send(messages.CancelWorkflow(workflow_id=workflow_id, reason=reason or None))

    def signal(self, workflow_id: str, name: str, payload: Any, *, idempotency_key: str | None = None) -> str:
        """Send a signal to a workflow; its id (the same for the same idempotency key)."""
        check_payload("$.payload", payload, max_bytes=self.settings.max_payload_bytes)
        signal_id = signal_id_of(workflow_id, name, idempotency_key)
        self.send(messages.SignalWorkflow(workflow_id=workflow_id, name=name, signal_id=signal_id, payload=payload))
        return signal_id

    def pause(self, workflow_id: str) -> None:
        """Ask the engine to pause a workflow: nothing new is scheduled until it resumes."""
        self.send(messages.PauseWorkflow(workflow_id=workflow_id))

    def resume(self, workflow_id: str) -> None:
        """Ask the engine to let a paused workflow go on."""
        self.send(messages.ResumeWorkflow(workflow_id=workflow_id))

    def retry(self, workflow_id: str, *, run: int | None = None) -> None:
        """Ask the engine to run a failed or cancelled workflow again from where it stopped
        (``run``: as that run, for a parent retrying its child)."""
        self.send(messages.RetryWorkflow(workflow_id=workflow_id, run=run))

    def rerun(self, workflow_id: str, from_step: str, **options: Any) -> None:
        """Ask the engine to run an ended workflow again from the step ``from_step``
        (``options``: the other fields of :class:`~flow.wire.messages.RerunWorkflow`)."""
        self.send(messages.RerunWorkflow(workflow_id=workflow_id, from_step=from_step, **options))
