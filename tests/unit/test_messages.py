"""The typed messages: each round-trips through the wire, reads what the first release
queued, and refuses what it cannot read, naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import dramatiq
import pytest

from flow.core import codec
from flow.core.policy import Timeouts
from flow.core.state import ActivityState, WorkflowState, WorkflowStatus
from flow.core.vocabulary import Outcome, TimerKind
from flow.errors import InvalidInput
from flow.wire import messages
from flow.wire.attempts import AttemptRequest, CancelNotice
from flow.wire.messages import (
    AttemptHeartbeat,
    AttemptResult,
    AttemptStarted,
    CancelWorkflow,
    Message,
    PauseWorkflow,
    RerunWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
    StartChild,
    StartWorkflow,
    TimerDue,
)
from flow.wire.outgoing import Outgoing

FIRST_RELEASE = Path(__file__).parents[1] / "fixtures" / "first_release" / "messages.json"
T = datetime(2026, 11, 28, 21, 0, 0, 123456)

REQUEST = AttemptRequest(
    workflow_id="5e91b9e0-bb8a-439a-8c06-84ed9ddce749",
    position=1,
    attempt=2,
    activity="DoSomethingActivity",
    config={"url": "https://example.org", "nested": {"list": [1, 2.5, None, True]}},
    input_data={"n": 6},
    outputs={"First": {"status": 200}},
    start_to_close_s=2.5,
    reply_to="flow.engine.17",
)

#: One of each message, every field set (and some left to their defaults).
EXAMPLES: list[Message] = [
    REQUEST,
    REQUEST.started(T),
    REQUEST.result(Outcome.SUCCEEDED, output={"a": [1, "b"]}, started_at=T, finished_at=T),
    REQUEST.result(Outcome.TEMPORARY_FAILURE, error="Traceback ...\nValueError: no"),
    AttemptResult(workflow_id="w", position=0, attempt=1, outcome=Outcome.PERMANENT_FAILURE, output=0),
    StartWorkflow(workflow_id="w"),
    TimerDue(workflow_id="w", kind=TimerKind.RETRY, position=3, attempt=4),
    TimerDue(workflow_id="w", kind=TimerKind.WORKFLOW, attempt=2),
    CancelWorkflow(workflow_id="w", reason="not needed"),
    CancelWorkflow(workflow_id="w"),
    RetryWorkflow(workflow_id="w"),
    SignalWorkflow(workflow_id="w", name="approved", signal_id="s-1", payload={"by": ["ana", 1]}),
    SignalWorkflow(workflow_id="w", name="approved", signal_id="s-2"),
    PauseWorkflow(workflow_id="w"),
    ResumeWorkflow(workflow_id="w"),
    # An item of a map: its item and index travel with the attempt.
    replace(REQUEST, position=12, item={"file": "a.png", "size": [1, 2]}, index=3),
    RetryWorkflow(workflow_id="w", run=3),
    RerunWorkflow(workflow_id="w", from_step="ship"),
    RerunWorkflow(
        workflow_id="w",
        from_step="ship",
        by="ana",
        version=2,
        definition={"name": "g", "activities": [{"name": "A", "id": "ship"}]},
        child_versions={},
        input_data={"order": 1},
    ),
    StartChild(
        workflow_id="w",
        position=2,
        attempt=1,
        child_id="c",
        definition="Child",
        version=4,
        input_data={"n": 1},
        reply_to="flow.engine.3",
    ),
    StartChild(workflow_id="w", position=0, attempt=2, child_id="c", definition="C", input_data={}, reply_to="q"),
    # A heartbeating attempt: its timeout and the last details of an earlier attempt travel with it.
    replace(REQUEST, heartbeat_s=10.0, last_heartbeat={"done": 41, "of": [1, 2]}),
    REQUEST.heartbeat({"done": 42}),
    AttemptHeartbeat(workflow_id="w", position=0, attempt=1),
    REQUEST.cancel(),
]


def every_message_class(cls: type = Message) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if hasattr(sub, "ACTOR"):
            found.add(sub)
        found |= every_message_class(sub)
    return found


def test_every_message_class_has_a_round_trip_example():
    assert {type(m) for m in EXAMPLES} == every_message_class()
    assert set(messages.ENGINE_MESSAGES.values()) == every_message_class() - {AttemptRequest, StartChild, CancelNotice}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_survives_the_wire(message):
    sent = message.to_message("some.queue")
    assert (sent.queue_name, sent.actor_name, sent.args) == ("some.queue", message.ACTOR, ())
    received = dramatiq.Message.decode(sent.encode())  # JSON, as any broker carries it
    assert type(message).from_message(received) == message
    assert type(message).from_kwargs(json.loads(json.dumps(message.to_kwargs()))) == message


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_the_wire_holds_plain_json_with_the_version_and_timestamps_with_z(message):
    kwargs = message.to_kwargs()
    assert kwargs["v"] == message.VERSION == 1
    assert json.loads(json.dumps(kwargs)) == kwargs
    for value in kwargs.values():
        assert type(value) in (str, int, float, bool, dict, list, type(None))  # no enum, no datetime
    for name in ("started_at", "finished_at"):
        if kwargs.get(name) is not None:
            assert kwargs[name] == "2026-11-28T21:00:00.123456Z"


def test_the_request_and_its_reports_name_the_same_attempt():
    started, result = REQUEST.started(T), REQUEST.result(Outcome.SUCCEEDED)
    for report in (started, result):
        assert (report.workflow_id, report.position, report.attempt) == ("5e91b9e0-bb8a-439a-8c06-84ed9ddce749", 1, 2)
    assert started.started_at == T
    assert result.duration_s is None
    assert REQUEST.result(Outcome.SUCCEEDED, started_at=T, finished_at=T.replace(second=2)).duration_s == 2


def test_the_request_carries_what_the_worker_needs_from_the_state():
    activities = tuple(
        ActivityState(
            position=i,
            name=name,
            independent=False,
            required=True,
            config={"k": i},
            timeouts=Timeouts(start_to_close_s=30 if i == 1 else None),
            output=output,
        )
        for i, (name, output) in enumerate([("A", {"a": 1}), ("B", None), ("C", [3])])
    )
    state = WorkflowState(
        id="wf",
        name="W",
        definition_version=1,
        status=WorkflowStatus.IN_PROGRESS,
        input_data={"x": 1},
        config={},
        activities=activities,
        created_at=T,
    )
    request = AttemptRequest.of(state, 1, 3, reply_to="flow.engine.9")
    assert request == AttemptRequest(
        workflow_id="wf",
        position=1,
        attempt=3,
        activity="B",
        config={"k": 1},
        input_data={"x": 1},
        outputs={"A": {"a": 1}, "C": [3]},
        start_to_close_s=30,
        reply_to="flow.engine.9",
    )
    owed = Outgoing.of(request, "flow.activities", partition=9, send_after=T)
    assert (owed.actor_name, owed.kwargs, owed.workflow_id) == (messages.RUN_ACTIVITY, request.to_kwargs(), "wf")
    assert AttemptRequest.from_message(owed.message()) == request
    assert owed.message().message_id == owed.id


def test_an_attempt_carries_its_workflow_s_traceparent_and_leaves_it_off_the_wire_when_none():
    untraced = replace(REQUEST, traceparent=None)
    assert "traceparent" not in untraced.to_kwargs()  # the wire of a release without tracing
    assert AttemptRequest.from_kwargs(untraced.to_kwargs()) == untraced
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = replace(REQUEST, traceparent=traceparent)
    assert traced.to_kwargs()["traceparent"] == traceparent
    assert AttemptRequest.from_kwargs(traced.to_kwargs()) == traced


# -- what the previous release queued ------------------------------------------------------


def first_release_messages() -> list[dramatiq.Message]:
    held = json.loads(FIRST_RELEASE.read_text())
    return [dramatiq.Message.decode(body.encode()) for bodies in held.values() for body in bodies]


def test_the_first_release_run_message_is_read_with_no_reply_queue():
    (message,) = [m for m in first_release_messages() if m.actor_name == messages.RUN_ACTIVITY]
    assert "v" not in message.kwargs and "reply_to" not in message.kwargs
    assert AttemptRequest.from_message(message) == AttemptRequest(
        workflow_id="e7bc4b79-d4d4-41a6-af2b-ebf95578d1f8",
        position=0,
        attempt=1,
        activity="NoopActivity",
        config={},
        input_data={"n": 6},
        outputs={},
        start_to_close_s=None,
        reply_to=None,
    )


def test_the_first_release_engine_messages_are_read():
    read = {
        m.actor_name: messages.ENGINE_MESSAGES[m.actor_name].from_message(m)
        for m in first_release_messages()
        if m.actor_name != messages.RUN_ACTIVITY
    }
    assert read == {
        messages.START_WORKFLOW: StartWorkflow(workflow_id="5e91b9e0-bb8a-439a-8c06-84ed9ddce749"),
        messages.TIMER_FIRED: TimerDue(
            workflow_id="94e1b8cf-4f2a-4a15-bb9a-dd41fd3ad901", kind=TimerKind.RETRY, position=0, attempt=2
        ),
    }


def test_reports_without_version_or_optional_fields_are_read():
    # What the first release's workers sent, and what tests/faults sends by hand.
    assert AttemptResult.from_kwargs(
        {"workflow_id": "w", "position": 1, "attempt": 1, "outcome": "PERMANENT_FAILURE"}
    ) == AttemptResult(workflow_id="w", position=1, attempt=1, outcome=Outcome.PERMANENT_FAILURE)
    started = AttemptStarted.from_kwargs(
        {"workflow_id": "w", "position": 0, "attempt": 1, "started_at": "2026-11-28T21:00:00.5"}
    )
    assert started.started_at == datetime(2026, 11, 28, 21, 0, 0, 500000)


# -- what no release sends ---------------------------------------------------------------------


def valid() -> dict:
    return json.loads(json.dumps(REQUEST.to_kwargs()))


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        ({"colour": "red"}, "$.colour", "unknown field"),
        ({"position": True}, "$.position", "must be an integer from 0 to 2**31 - 1"),
        ({"position": "1"}, "$.position", "must be an integer"),
        ({"attempt": -1}, "$.attempt", "must be an integer"),
        ({"attempt": 2**31}, "$.attempt", "must be an integer"),
        ({"attempt": 1.0}, "$.attempt", "must be an integer"),
        ({"workflow_id": ""}, "$.workflow_id", "must be a string of 1 to 255 characters"),
        ({"workflow_id": "w" * 256}, "$.workflow_id", "must be a string of 1 to 255 characters"),
        ({"activity": None}, "$.activity", "must be a string of 1 to 255 characters"),
        ({"config": []}, "$.config", "must be a JSON object"),
        ({"input_data": None}, "$.input_data", "must be a JSON object"),
        ({"start_to_close_s": "5"}, "$.start_to_close_s", "must be a number of at least 0 or null"),
        ({"start_to_close_s": -1}, "$.start_to_close_s", "must be a number"),
        ({"start_to_close_s": float("nan")}, "$.start_to_close_s", "must be a number"),
        ({"reply_to": 7}, "$.reply_to", "or null"),
        ({"v": 2}, "$.v", "flow.run_activity version 2 is from a newer release (this one reads up to 1)"),
        ({"v": 0}, "$.v", "must be a positive integer"),
        ({"v": True}, "$.v", "must be a positive integer"),
    ],
)
def test_a_request_that_cannot_be_read_is_refused_naming_the_field(change, path, problem):
    with pytest.raises(InvalidInput) as refused:
        AttemptRequest.from_kwargs({**valid(), **change})
    assert refused.value.path == path and problem in refused.value.message


def test_a_missing_field_is_named():
    kwargs = valid()
    del kwargs["outputs"]
    with pytest.raises(InvalidInput, match=r"\$\.outputs: required: a JSON object"):
        AttemptRequest.from_kwargs(kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs", "path"),
    [
        (AttemptResult, {"workflow_id": "w", "position": 0, "attempt": 1, "outcome": "DONE"}, "$.outcome"),
        (
            AttemptResult,
            {"workflow_id": "w", "position": 0, "attempt": 1, "outcome": "SUCCEEDED", "error": 1},
            "$.error",
        ),
        (AttemptStarted, {"workflow_id": "w", "position": 0, "attempt": 1, "started_at": "yesterday"}, "$.started_at"),
        (AttemptStarted, {"workflow_id": "w", "position": 0, "attempt": 1, "started_at": 1700000000}, "$.started_at"),
        (TimerDue, {"workflow_id": "w", "kind": "later", "attempt": 1}, "$.kind"),
        (CancelWorkflow, {"workflow_id": "w", "reason": {"why": "x"}}, "$.reason"),
        (StartWorkflow, {"workflow_id": "w", "name": "DummyWorkflow"}, "$.name"),
    ],
)
def test_reports_and_requests_to_the_engine_refuse_wrong_values(cls, kwargs, path):
    with pytest.raises(InvalidInput) as refused:
        cls.from_kwargs(kwargs)
    assert refused.value.path == path


def test_a_message_of_another_actor_or_with_positional_arguments_is_refused():
    with pytest.raises(InvalidInput, match="is not flow.run_activity"):
        AttemptRequest.from_message(StartWorkflow(workflow_id="w").to_message("q"))
    with pytest.raises(InvalidInput, match="keyword arguments only"):
        AttemptRequest.from_message(REQUEST.to_message("q").copy(args=("w",)))
    with pytest.raises(InvalidInput, match="must be keyword arguments"):
        AttemptRequest.from_kwargs(["w"])  # type: ignore[arg-type]


def test_a_field_type_the_codec_cannot_write_is_refused_at_its_first_use():
    @dataclass(frozen=True)
    class Odd:
        tags: set[str]

    with pytest.raises(TypeError, match="no field of a message can be"):
        codec.encode(Odd({"a"}))


def test_workers_import_neither_the_database_nor_the_store():
    code = (
        "import sys, flow.process.tasks, flow.worker.execution, flow.worker.deliveries, flow.wire.messages\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('peewee', 'playhouse', 'psycopg', 'psycopg2')"
        " or m.startswith('flow.persistence')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
