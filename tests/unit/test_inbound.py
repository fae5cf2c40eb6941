"""Reading engine messages: every valid message becomes its event; anything else is poison."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from flow.core.events import (
    ActivityCompleted,
    ActivityStarted,
    CancelRequested,
    RetryRequested,
    TimerFired,
    WorkflowStarted,
)
from flow.engine.inbound import PoisonMessage, decode

NOW = datetime(2026, 1, 1, 12, 0, 0)


def body(actor_name: str, **kwargs) -> bytes:
    return json.dumps(
        {
            "queue_name": "flow.engine.3",
            "actor_name": actor_name,
            "args": [],
            "kwargs": kwargs,
            "options": {},
            "message_id": "m",
            "message_timestamp": 0,
        }
    ).encode()


@pytest.mark.parametrize(
    ("message", "event"),
    [
        (body("flow.start_workflow", workflow_id="w"), WorkflowStarted(NOW)),
        (
            body("flow.record_started", workflow_id="w", position=1, attempt=2, started_at="2026-01-01T11:00:00Z"),
            ActivityStarted(1, 2, datetime(2026, 1, 1, 11)),
        ),
        (
            body("flow.record_result", workflow_id="w", position=0, attempt=1, outcome="SUCCEEDED", output={"a": 1}),
            ActivityCompleted(0, 1, "SUCCEEDED", NOW, output={"a": 1}),
        ),
        (
            body("flow.timer_fired", workflow_id="w", kind="retry", position=0, attempt=2),
            TimerFired("retry", 0, 2, NOW),
        ),
        (
            body("flow.timer_fired", workflow_id="w", kind="workflow", position=None, attempt=1),
            TimerFired("workflow", None, 1, NOW),
        ),
        (body("flow.cancel_workflow", workflow_id="w", reason="no"), CancelRequested(NOW, "no")),
        (body("flow.retry_workflow", workflow_id="w"), RetryRequested(NOW)),
    ],
)
def test_each_engine_message_becomes_its_event(message, event):
    assert decode(message, now=NOW) == ("w", event)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"{nope", "not a JSON"),
        (b"[]", "not a Dramatiq message"),
        (body("flow.run_activity", workflow_id="w"), "is not an engine message"),
        (body("flow.start_workflow", workflow_id="w", name="DummyWorkflow"), "unknown argument 'name'"),
        (body("flow.start_workflow"), "workflow_id must be a string"),
        (body("flow.record_result", workflow_id="w", position=0, attempt=1, outcome="MAYBE"), "outcome must be"),
        (body("flow.record_result", workflow_id="w", position=-1, attempt=1, outcome="SUCCEEDED"), "position"),
        (body("flow.record_result", workflow_id="w", position=True, attempt=1, outcome="SUCCEEDED"), "position"),
        (body("flow.record_started", workflow_id="w", position=0, attempt=1, started_at="yesterday"), "ISO 8601"),
        (body("flow.timer_fired", workflow_id="w", kind="sometime", position=0, attempt=1), "unknown timer kind"),
        (body("flow.cancel_workflow", workflow_id="w", reason=["x"]), "reason must be a string"),
        (body("flow.retry_workflow", workflow_id="w" * 300), "workflow_id must be a string"),
    ],
)
def test_a_message_that_can_never_be_handled_is_poison(message, reason):
    with pytest.raises(PoisonMessage, match=reason):
        decode(message, now=NOW)


def test_positional_arguments_are_poison():
    message = json.loads(body("flow.retry_workflow", workflow_id="w"))
    message["args"] = ["w"]
    with pytest.raises(PoisonMessage, match="keyword arguments only"):
        decode(json.dumps(message).encode(), now=NOW)
