"""Reading what arrives on a partition queue: a Dramatiq message about one workflow,
turned into the event it reports.

Whatever cannot be read — not JSON, not a Dramatiq message, an unknown actor, a
field of the wrong type — raises :class:`PoisonMessage`, and the engine
dead-letters it at once (``<queue>.XQ``) with the reason in its log: trying again
could only fail again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flow import messages
from flow.clock import parse_iso
from flow.core.events import (
    OUTCOMES,
    ActivityCompleted,
    ActivityStarted,
    CancelRequested,
    Event,
    RetryRequested,
    TimerFired,
    TimerKind,
    WorkflowStarted,
)
from flow.errors import FlowError


class PoisonMessage(FlowError):
    """Raised when a message on an engine queue can never be handled; it is dead-lettered."""


def decode(body: bytes, *, now: datetime) -> tuple[str, Event]:
    """``(workflow_id, event)`` from a Dramatiq message body."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise PoisonMessage(f"not a JSON Dramatiq message: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kwargs"), dict):
        raise PoisonMessage("not a Dramatiq message with keyword arguments")
    if message.get("args"):
        raise PoisonMessage("engine messages take keyword arguments only")
    return event_of(message.get("actor_name"), message["kwargs"], now=now)


def event_of(actor_name: Any, kwargs: Mapping[str, Any], *, now: datetime) -> tuple[str, Event]:
    """``(workflow_id, event)`` from an engine message's actor name and arguments."""
    if actor_name not in messages.ENGINE_MESSAGES:
        raise PoisonMessage(f"{actor_name!r} is not an engine message")
    fields = _Fields(actor_name, kwargs)
    workflow_id = fields.string("workflow_id")
    event: Event
    if actor_name == messages.START_WORKFLOW:
        fields.allow({"workflow_id"}, hint="a start by name goes to the <prefix>.engine queue")
        event = WorkflowStarted(occurred_at=now)
    elif actor_name == messages.RECORD_STARTED:
        fields.allow({"workflow_id", "position", "attempt", "started_at"})
        started_at = fields.timestamp("started_at")
        event = ActivityStarted(fields.integer("position"), fields.integer("attempt"), occurred_at=started_at or now)
    elif actor_name == messages.RECORD_RESULT:
        fields.allow({"workflow_id", "position", "attempt", "outcome", "output", "error", "started_at", "finished_at"})
        outcome = kwargs.get("outcome")
        if outcome not in OUTCOMES:
            raise PoisonMessage(f"{actor_name}: outcome must be one of {', '.join(OUTCOMES)}")
        event = ActivityCompleted(
            fields.integer("position"),
            fields.integer("attempt"),
            outcome,
            occurred_at=now,
            output=kwargs.get("output"),
            error=fields.optional_string("error"),
            started_at=fields.timestamp("started_at"),
            finished_at=fields.timestamp("finished_at"),
        )
    elif actor_name == messages.TIMER_FIRED:
        fields.allow({"workflow_id", "kind", "position", "attempt"})
        kind = kwargs.get("kind")
        if kind not in {k.value for k in TimerKind}:
            raise PoisonMessage(f"{actor_name}: unknown timer kind {kind!r}")
        position = None if kwargs.get("position") is None else fields.integer("position")
        event = TimerFired(TimerKind(kind), position, fields.integer("attempt"), occurred_at=now)
    elif actor_name == messages.CANCEL_WORKFLOW:
        fields.allow({"workflow_id", "reason"})
        event = CancelRequested(occurred_at=now, reason=fields.optional_string("reason"))
    else:
        fields.allow({"workflow_id"})
        event = RetryRequested(occurred_at=now)
    return workflow_id, event


class _Fields:
    def __init__(self, actor_name: str, kwargs: Mapping[str, Any]) -> None:
        self.actor_name = actor_name
        self.kwargs = kwargs

    def allow(self, names: set[str], hint: str = "") -> None:
        unknown = sorted(set(self.kwargs) - names)
        if unknown:
            raise PoisonMessage(f"{self.actor_name}: unknown argument {unknown[0]!r}" + (f" ({hint})" if hint else ""))

    def string(self, name: str) -> str:
        value = self.kwargs.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 255:
            raise PoisonMessage(f"{self.actor_name}: {name} must be a string of 1 to 255 characters")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.kwargs.get(name)
        if value is not None and not isinstance(value, str):
            raise PoisonMessage(f"{self.actor_name}: {name} must be a string")
        return value

    def integer(self, name: str) -> int:
        value = self.kwargs.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            raise PoisonMessage(f"{self.actor_name}: {name} must be an integer from 0 to 2**31 - 1")
        return value

    def timestamp(self, name: str) -> datetime | None:
        value = self.kwargs.get(name)
        if value is None:
            return None
        try:
            return parse_iso(value)
        except (TypeError, ValueError, OverflowError):
            raise PoisonMessage(f"{self.actor_name}: {name} must be an ISO 8601 timestamp") from None
