"""Reading what arrives on a partition queue: a Dramatiq message about one workflow,
turned into the event it reports.

The message classes of :mod:`flow.wire.messages` say what each message holds; this module
only frames them. Whatever cannot be read — not JSON, not a Dramatiq message, an
unknown actor, a missing or unknown field, a field of the wrong type, a version from
a newer release — raises :class:`PoisonMessage`, and the engine dead-letters it at
once (``<queue>.XQ``) with the reason in its log: trying again could only fail again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flow.core.events import Event
from flow.errors import FlowError, InvalidInput
from flow.wire import messages


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
    message_type = messages.ENGINE_MESSAGES.get(actor_name) if isinstance(actor_name, str) else None
    if message_type is None:
        raise PoisonMessage(f"{actor_name!r} is not an engine message")
    try:
        message = message_type.from_kwargs(kwargs)
    except InvalidInput as e:
        raise PoisonMessage(f"{actor_name}: {e}") from None
    return message.workflow_id, message.to_event(now)
