"""The Dramatiq door of the shared engine queue ``<prefix>.engine``: an engine message that
reached it (a sender that does not know the partitions, a message from before partitions
existed) is read as strictly as the API reads the same request, then forwarded to its
workflow's partition queue.

A request about a workflow that the API would refuse (:mod:`flow.service.checks`) is
logged with the API's words, and forwarded all the same: the messages of a queue are
ordered, and one sent just behind another (a resume behind a pause, a retry behind a
cancel) would be judged against a workflow that the first has not changed yet. The
engine applies them in order and records its own do-nothing when the reason still holds.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from flow.core import strict_json
from flow.core.kinds import wait
from flow.errors import CallbackTokenSpent, FlowError, InvalidInput, StoreUnavailable, WorkflowNotFound
from flow.persistence.store import Store
from flow.service.callbacks import CallbackDoor
from flow.service.checks import check_payload
from flow.service.controls import CONTROL_MESSAGES, refusal_of
from flow.service.senders import Senders
from flow.wire import messages

logger = logging.getLogger(__name__)


class SharedQueueDoor:
    """Forwards the engine messages of the shared queue to their partitions' queues."""

    def __init__(self, store: Store, senders: Senders, callbacks: CallbackDoor, *, max_payload_bytes: int) -> None:
        self.store = store
        self.senders = senders
        self.callbacks = callbacks
        self.max_payload_bytes = max_payload_bytes

    def __repr__(self) -> str:
        return f"<SharedQueueDoor {self.senders!r}>"

    def forward(self, message: dramatiq.Message[Any]) -> None:
        """Send an engine message that reached the shared queue on to its partition's queue."""
        if message.actor_name == messages.SIGNAL_WORKFLOW and "token" in message.kwargs:
            self._callback_message(message)
            return
        workflow_id = message.kwargs.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise WorkflowNotFound(str(workflow_id))
        if message.actor_name == messages.SIGNAL_WORKFLOW:
            message = self._checked_signal(message)
        self._report_refusal(message, workflow_id)
        self.senders.broker.enqueue(message.copy(queue_name=self.senders.queue_of(workflow_id)))

    def _report_refusal(self, message: dramatiq.Message[Any], workflow_id: str) -> None:
        """Log why the API would refuse this request now (see the module docstring)."""
        if message.actor_name not in CONTROL_MESSAGES:
            return
        error: FlowError | None
        try:
            error = refusal_of(message.actor_name, self.store.get(workflow_id).state, message.kwargs)
        except WorkflowNotFound as e:
            error = e
        except StoreUnavailable as e:  # only a report: the engine decides anyway
            logger.debug("%s for %s not checked: %s", message.actor_name, workflow_id, e)
            return
        if error is not None:
            logger.warning(
                "%s %s: %s; forwarded, its engine applies it in its order", message.actor_name, workflow_id, error
            )

    def _checked_signal(self, message: dramatiq.Message[Any]) -> dramatiq.Message[Any]:
        """A signal from the Dramatiq door, read as strictly as the API reads one (a name a
        wait can have, strict JSON within the payload limit); without a ``signal_id``, the
        message's id names it, so a redelivery is recognised."""
        name = message.kwargs.get("name")
        if not isinstance(name, str) or not wait.is_signal_name(name):
            raise InvalidInput("$.name", f"must match {wait.NAME_PATTERN}")
        payload = message.kwargs.get("payload")
        strict_json.check(payload, path="$.payload")
        check_payload("$.payload", payload, max_bytes=self.max_payload_bytes)
        if "signal_id" in message.kwargs:
            return message
        return message.copy(kwargs={**message.kwargs, "signal_id": message.message_id})

    def _callback_message(self, message: dramatiq.Message[Any]) -> None:
        """``flow.signal_workflow`` with ``{"token", "payload"}``: a callback by its token.
        A token that is not ours, or any other field, is dead-lettered; a spent one (a
        redelivery after it was taken, or too late) is logged and dropped."""
        unknown = message.kwargs.keys() - {"token", "payload", messages.VERSION_KEY}
        if unknown:
            raise InvalidInput(f"$.{sorted(unknown)[0]}", "a signal by callback token has token and payload only")
        payload = message.kwargs.get("payload")
        strict_json.check(payload, path="$.payload")
        target = self.callbacks.target(message.kwargs["token"])
        try:
            self.callbacks.send(target, payload)
        except CallbackTokenSpent as e:
            logger.warning("callback message %s dropped: %s", message.message_id, e)
