"""Event triggers (docs/design.md, "Event triggers"): what a definition's ``triggers``
say, which of them an event matches, the input each match gives, and the arithmetic of
debounce and batch windows.

A definition may say ``"triggers": [{"event": "order.updated", "when": "data.paid",
"input": "data", "key": "data.order_id", "debounce_s": 2}]``. Every expression is
JMESPath over the event itself, ``{"type", "id", "data"}`` (so ``key`` reads
``data.order_id``), evaluated within the budget of :mod:`flow.core.expressions`.

Three modes, one per trigger:

- *immediate* (neither ``debounce_s`` nor ``batch``): each matching event starts a
  workflow with its input;
- *debounce*: the events of one key start one workflow, with the last event's input,
  once ``debounce_s`` passed without another one — but never later than
  :data:`DEBOUNCE_CAP` windows after the first, so a key that never goes quiet still
  starts a workflow now and then;
- *batch*: the events of one key are collected until ``max`` of them or ``wait_s``
  after the first, whichever comes first; the workflow's input is
  ``{"events": [each event's input, oldest first]}``.

Pure: the shell passes "now" in; nothing here reads a clock or a database.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flow.core import graph, limits, strict_json, validation
from flow.core.expressions import MAX_EXPRESSION_CHARS, evaluate
from flow.core.frozen import replace
from flow.core.strict_json import JSON
from flow.core.timestamps import iso
from flow.errors import InvalidInput

#: Most triggers one definition may declare.
MAX_TRIGGERS = 20
#: Longest debounce or batch window, in seconds (a day).
MAX_WINDOW_S = 86_400
#: Most events one batch holds.
MAX_BATCH = 1000
#: A debounce window closes at the latest this many ``debounce_s`` after its first event.
DEBOUNCE_CAP = 10
#: What an event type looks like: ``order.updated``, ``file/uploaded``, ``v2:invoice-paid``.
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
#: Longest event id.
MAX_EVENT_ID_CHARS = 200

#: Namespace of the workflow ids derived from events (:func:`window_workflow_id`).
WORKFLOW_NAMESPACE = uuid.UUID("3b0f7c52-6d1e-4a8b-9f27-5e4c1a0d8b63")
#: Namespace of a window's slot (:func:`window_slot`).
SLOT_NAMESPACE = uuid.UUID("8e2a4d19-0c7b-4f35-b6e1-9a3d5f7c2b40")

_TYPE = re.compile(TYPE_PATTERN)
_EXPRESSION: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_CHARS}

#: JSON Schema of a definition's top-level ``triggers`` key.
SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": MAX_TRIGGERS,
    "items": {
        "type": "object",
        "required": ["event"],
        "additionalProperties": False,
        "properties": {
            "event": {"type": "string", "pattern": TYPE_PATTERN},
            "when": _EXPRESSION,
            "input": _EXPRESSION,
            "key": _EXPRESSION,
            "debounce_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW_S},
            "batch": {
                "type": "object",
                "required": ["max", "wait_s"],
                "additionalProperties": False,
                "properties": {
                    "max": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH},
                    "wait_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW_S},
                },
            },
        },
    },
}

#: JSON Schema of an event, as every door reads it.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "id"],
    "additionalProperties": False,
    "properties": {
        "type": {
            "type": "string",
            "pattern": TYPE_PATTERN,
            "description": "the event's type: 1 to 128 letters, digits, '.', '_', ':', '/', '-' (order.updated)",
        },
        "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EVENT_ID_CHARS,
            "description": f"the event's own id, a string of 1 to {MAX_EVENT_ID_CHARS} characters "
            "(a resent id starts nothing)",
        },
        "data": {"type": "object", "description": "a JSON object (what the triggers read as data)"},
    },
    "examples": [{"type": "order.updated", "id": "evt-123", "data": {"order_id": 42, "status": "paid"}}],
}


class Mode(StrEnum):
    """How a trigger turns matching events into workflows (see the module docstring)."""

    IMMEDIATE = "immediate"
    DEBOUNCE = "debounce"
    BATCH = "batch"


@dataclass(frozen=True)
class EventTrigger:
    """One entry of a definition's ``triggers``."""

    definition: str
    #: Its place in the definition's list (a workflow's id is derived from it).
    index: int
    event: str
    when: str | None = None
    #: None: the event's ``data``.
    input: str | None = None
    #: None: every event of the type shares one window.
    key: str | None = None
    debounce_s: float | None = None
    batch_max: int | None = None
    batch_wait_s: float | None = None

    @property
    def mode(self) -> Mode:
        if self.debounce_s is not None:
            return Mode.DEBOUNCE
        return Mode.BATCH if self.batch_max is not None else Mode.IMMEDIATE


@dataclass(frozen=True)
class Event:
    """An event as a door received it."""

    type: str
    id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "data": dict(self.data)}


@dataclass(frozen=True)
class Match:
    """``trigger`` matched: its workflow gets ``input`` (in the window of ``key``)."""

    trigger: EventTrigger
    input: dict[str, Any]
    key: str = ""


@dataclass(frozen=True)
class Miss:
    """``trigger`` listens to the event's type but starts nothing for it, and why."""

    trigger: EventTrigger
    reason: str


_EVENT_VALIDATOR = validation.validator(EVENT_SCHEMA)


def parse_event(fields: Any) -> Event:
    """Validate a decoded event (every door's) against :data:`EVENT_SCHEMA`; raise
    :class:`~flow.errors.InvalidInput` naming the offending field."""
    strict_json.check(fields)
    validation.check(_EVENT_VALIDATOR, fields)
    if not is_event_type(fields["type"]):  # the schema's "$" also matches before a final newline
        raise InvalidInput("$.type", f"must be {EVENT_SCHEMA['properties']['type']['description']}")
    problem = strict_json.text_problem(fields["id"])
    if problem:
        raise InvalidInput("$.id", problem)
    return Event(type=fields["type"], id=fields["id"], data=fields.get("data") or {})


def problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the schema cannot say of a definition's ``triggers``: expressions that do not
    compile, and a trigger that both debounces and batches."""
    found: list[tuple[str, str]] = []
    for index, entry in enumerate(body.get("triggers", [])):
        for name in ("when", "input", "key"):
            if name in entry:
                found += graph.expression_problems(entry[name], f"$.triggers[{index}].{name}")
        if "debounce_s" in entry and "batch" in entry:
            found.append((f"$.triggers[{index}]", "a trigger debounces (debounce_s) or batches (batch), not both"))
    return found


def from_body(body: Mapping[str, Any]) -> tuple[EventTrigger, ...]:
    """The triggers of a valid definition body."""
    return tuple(
        EventTrigger(
            definition=body["name"],
            index=index,
            event=entry["event"],
            when=entry.get("when"),
            input=entry.get("input"),
            key=entry.get("key"),
            debounce_s=entry.get("debounce_s"),
            batch_max=entry["batch"]["max"] if "batch" in entry else None,
            batch_wait_s=entry["batch"]["wait_s"] if "batch" in entry else None,
        )
        for index, entry in enumerate(body.get("triggers", []))
    )


def is_event_type(value: Any) -> bool:
    return isinstance(value, str) and _TYPE.fullmatch(value) is not None


def match(triggers: Sequence[EventTrigger], event: Event) -> list[Match | Miss]:
    """What each trigger listening to ``event.type`` makes of it, in the given order."""
    context = event.to_dict()
    return [_one(trigger, context) for trigger in triggers if trigger.event == event.type]


def _one(trigger: EventTrigger, context: Mapping[str, Any]) -> Match | Miss:
    if trigger.when is not None:
        verdict = graph.by_condition(trigger.when, context)
        if not verdict.run:
            return Miss(trigger, verdict.fail or verdict.skip or "")
    given: JSON = context["data"]
    if trigger.input is not None:
        try:
            given = evaluate(trigger.input, context)
        except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
            return Miss(trigger, graph.unevaluable("input", trigger.input, e))
    if not isinstance(given, dict):
        return Miss(trigger, f"input {graph.shown(trigger.input or 'data')} gave {graph.quoted(given)}, not an object")
    key = ""
    if trigger.key is not None:
        try:
            value = evaluate(trigger.key, context)
        except Exception as e:  # noqa: BLE001
            return Miss(trigger, graph.unevaluable("key", trigger.key, e))
        if value is None:
            return Miss(trigger, f"key {graph.shown(trigger.key)} is null for this event")
        key = limits.key_text(value)
    return Match(trigger, given, key)


@dataclass(frozen=True)
class Window:
    """The open window of one (trigger, key): its events' inputs and when it closes."""

    opened_at: datetime
    closes_at: datetime
    #: Debounce: the last event's input only; batch: every event's, oldest first.
    inputs: tuple[dict[str, Any], ...]
    #: Events received in it.
    count: int


def add(
    trigger: EventTrigger, window: Window | None, given: dict[str, Any], now: datetime
) -> tuple[Window | None, Window | None]:
    """An event with input ``given`` arrives at ``now`` for ``trigger``'s ``window``
    (None: none is open); ``(still open, closed now)``. An immediate trigger's event is
    a window closed at once; a batch that reaches ``max`` closes at once."""
    if trigger.mode is Mode.IMMEDIATE:
        return window, Window(now, now, (given,), 1)
    if trigger.mode is Mode.DEBOUNCE:
        assert trigger.debounce_s is not None
        opened = now if window is None else window.opened_at
        count = 1 if window is None else window.count + 1
        return Window(opened, debounce_closes_at(opened, now, trigger.debounce_s), (given,), count), None
    assert trigger.batch_max is not None and trigger.batch_wait_s is not None
    if window is None:
        window = Window(now, now + timedelta(seconds=trigger.batch_wait_s), (), 0)
    grown = replace(window, inputs=(*window.inputs, given), count=window.count + 1)
    if grown.count >= trigger.batch_max:
        return None, replace(grown, closes_at=now)
    return grown, None


def outgrows(trigger: EventTrigger, window: Window, given: dict[str, Any], max_bytes: int | None) -> bool:
    """Whether ``given`` added to the batch ``window`` would make its workflow's input
    more than ``max_bytes`` of JSON (``FLOW_MAX_PAYLOAD_BYTES``): the batch then starts as
    it is and ``given`` opens the next one, so a batch's input can always start and its
    row never grows past the limit (a debounce window holds one input: never)."""
    if max_bytes is None or trigger.mode is not Mode.BATCH or not window.inputs:
        return False
    return len(json.dumps(workflow_input(trigger, (*window.inputs, given)))) > max_bytes


def has_closed(window: Window, now: datetime) -> bool:
    """Whether ``window``'s time has come by ``now``: an event arriving then belongs to the
    next window, even while the engine that closes it has not moved it yet."""
    return now >= window.closes_at


def debounce_closes_at(opened_at: datetime, last_at: datetime, debounce_s: float) -> datetime:
    """When a debounce window opened at ``opened_at`` whose last event came at
    ``last_at`` closes: ``debounce_s`` after that event, at most :data:`DEBOUNCE_CAP`
    windows after the first."""
    return min(last_at + timedelta(seconds=debounce_s), opened_at + timedelta(seconds=DEBOUNCE_CAP * debounce_s))


def window_workflow_id(event_id: str, received_at: datetime, trigger: EventTrigger) -> str:
    """The id of the workflow of the window that the event ``event_id`` (received at
    ``received_at``) opened for ``trigger`` — for an immediate trigger, the event's own.
    Derived, so every replay of a stored window starts the same workflow; the time is in
    it so that an id resent after ``FLOW_EVENT_DEDUP_S`` starts a new one."""
    return str(uuid.uuid5(WORKFLOW_NAMESPACE, f"{event_id}@{iso(received_at)}/{trigger.definition}/{trigger.index}"))


def window_slot(trigger: EventTrigger, key: str) -> str:
    """The one place an open window of (``trigger``, ``key``) is kept."""
    return str(uuid.uuid5(SLOT_NAMESPACE, f"{trigger.definition}/{trigger.index}/{key}"))


def workflow_input(trigger: EventTrigger, inputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The input of the workflow a closed window starts."""
    if trigger.mode is Mode.BATCH:
        return {"events": [dict(given) for given in inputs]}
    return dict(inputs[-1])


__all__ = [
    "DEBOUNCE_CAP",
    "EVENT_SCHEMA",
    "MAX_BATCH",
    "MAX_EVENT_ID_CHARS",
    "MAX_TRIGGERS",
    "MAX_WINDOW_S",
    "SCHEMA",
    "TYPE_PATTERN",
    "Event",
    "EventTrigger",
    "Match",
    "Miss",
    "Mode",
    "Window",
    "add",
    "debounce_closes_at",
    "window_slot",
    "window_workflow_id",
    "from_body",
    "has_closed",
    "outgrows",
    "is_event_type",
    "match",
    "parse_event",
    "problems",
    "workflow_input",
]
