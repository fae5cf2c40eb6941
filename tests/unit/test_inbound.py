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
from flow.core.vocabulary import Outcome, TimerKind
from flow.engine.inbound import PoisonMessage, decode
from flow.wire.messages import (
    AttemptResult,
    AttemptStarted,
    CancelWorkflow,
    RetryWorkflow,
    StartWorkflow,
    TimerDue,
)

NOW = datetime(2026, 1, 1, 12, 0, 0)


def body(actor_name: object, **kwargs) -> bytes:
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
            ActivityCompleted(0, 1, Outcome.SUCCEEDED, NOW, output={"a": 1}),
        ),
        (
            body("flow.timer_fired", workflow_id="w", kind="retry", position=0, attempt=2),
            TimerFired(TimerKind.RETRY, 0, 2, NOW),
        ),
        (
            body("flow.timer_fired", workflow_id="w", kind="workflow", position=None, attempt=1),
            TimerFired(TimerKind.WORKFLOW, None, 1, NOW),
        ),
        (
            body("flow.timer_fired", workflow_id="w", kind="workflow", attempt=1),
            TimerFired(TimerKind.WORKFLOW, None, 1, NOW),
        ),
        (
            body(
                "flow.record_result",
                v=1,
                workflow_id="w",
                position=0,
                attempt=1,
                outcome="TEMPORARY_FAILURE",
                output=None,
                error="boom",
                started_at="2026-01-01T11:00:00Z",
                finished_at="2026-01-01T11:00:01.5",  # the first release wrote no Z
            ),
            ActivityCompleted(
                0,
                1,
                Outcome.TEMPORARY_FAILURE,
                NOW,
                error="boom",
                started_at=datetime(2026, 1, 1, 11),
                finished_at=datetime(2026, 1, 1, 11, 0, 1, 500000),
            ),
        ),
        (body("flow.cancel_workflow", workflow_id="w", reason="no"), CancelRequested(NOW, "no")),
        (body("flow.retry_workflow", workflow_id="w"), RetryRequested(NOW)),
    ],
)
def test_each_engine_message_becomes_its_event(message, event):
    assert decode(message, now=NOW) == ("w", event)


@pytest.mark.parametrize(
    "message",
    [
        StartWorkflow(workflow_id="w"),
        AttemptStarted(workflow_id="w", position=1, attempt=2, started_at=datetime(2026, 1, 1, 11)),
        AttemptResult(workflow_id="w", position=0, attempt=1, outcome=Outcome.PERMANENT_FAILURE, error="no"),
        TimerDue(workflow_id="w", kind=TimerKind.START_TO_CLOSE, position=0, attempt=1),
        CancelWorkflow(workflow_id="w", reason="enough"),
        RetryWorkflow(workflow_id="w"),
    ],
    ids=lambda m: m.ACTOR,
)
def test_what_the_senders_encode_the_engine_decodes(message):
    assert decode(message.to_message("flow.engine.3").encode(), now=NOW) == ("w", message.to_event(NOW))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"{nope", "not a JSON"),
        (b"[]", "not a Dramatiq message"),
        (body("flow.run_activity", workflow_id="w"), "is not an engine message"),
        (body("flow.start_workflow", workflow_id="w", name="DummyWorkflow"), r"\$.name: unknown field \(a start by"),
        (body("flow.start_workflow"), r"\$.workflow_id: required"),
        (body("flow.start_workflow", workflow_id=None), r"\$.workflow_id: must be a string"),
        (body("flow.start_workflow", workflow_id="w", v=2), "version 2 is from a newer release"),
        (body("flow.start_workflow", workflow_id="w", v="1"), r"\$.v: must be a positive integer"),
        (body(["flow.start_workflow"], workflow_id="w"), "is not an engine message"),
        (body("flow.record_result", workflow_id="w", position=0, attempt=1, outcome="MAYBE"), "outcome: must be one"),
        (body("flow.record_result", workflow_id="w", position=0, attempt=1), r"\$.outcome: required"),
        (body("flow.record_result", workflow_id="w", position=-1, attempt=1, outcome="SUCCEEDED"), "position"),
        (body("flow.record_result", workflow_id="w", position=True, attempt=1, outcome="SUCCEEDED"), "position"),
        (body("flow.record_started", workflow_id="w", position=0, attempt=1, started_at="yesterday"), "ISO 8601"),
        (body("flow.timer_fired", workflow_id="w", kind="sometime", position=0, attempt=1), "kind: must be one of"),
        (body("flow.cancel_workflow", workflow_id="w", reason=["x"]), "reason: must be a string"),
        (body("flow.retry_workflow", workflow_id="w" * 300), "workflow_id: must be a string"),
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
