"""The lenient reader of an attempt message's identity (:meth:`AttemptIdentity.read`): what a
worker that cannot read the whole attempt still reads, so that it can fail the attempt at once."""

from __future__ import annotations

from typing import Any

import pytest

from flow.core.vocabulary import Outcome
from flow.errors import InvalidInput
from flow.wire.attempts import AttemptIdentity, AttemptRequest, unreadable_error
from flow.wire.messages import AttemptResult

WHOLE = AttemptRequest(
    workflow_id="wf-1",
    position=2,
    attempt=3,
    activity="Doubles",
    config={},
    input_data={},
    outputs={},
    reply_to="flow.engine.5",
).to_kwargs()
IDENTITY = AttemptIdentity(workflow_id="wf-1", position=2, attempt=3, reply_to="flow.engine.5")
NO_REPLY_TO = AttemptIdentity(workflow_id="wf-1", position=2, attempt=3)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(WHOLE, IDENTITY, id="a readable attempt"),
        pytest.param({**WHOLE, "from_the_future": 1}, IDENTITY, id="an unknown field"),
        pytest.param({**WHOLE, "v": 9}, IDENTITY, id="a newer version"),
        pytest.param({**WHOLE, "start_to_close_s": -1}, IDENTITY, id="a value out of range"),
        pytest.param({**WHOLE, "activity": None, "config": "x"}, IDENTITY, id="fields of the wrong type"),
        pytest.param({"workflow_id": "wf-1", "position": 2, "attempt": 3}, NO_REPLY_TO, id="only the identity"),
        pytest.param({**WHOLE, "reply_to": None}, NO_REPLY_TO, id="a null reply_to"),
        pytest.param({**WHOLE, "reply_to": ""}, NO_REPLY_TO, id="an empty reply_to: to the shared queue"),
        pytest.param({**WHOLE, "reply_to": 7}, NO_REPLY_TO, id="a reply_to that is no name"),
    ],
)
def test_the_identity_is_read_whatever_else_the_message_holds(fields: dict[str, Any], expected: AttemptIdentity):
    assert AttemptIdentity.read(fields) == expected


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        pytest.param({k: v for k, v in WHOLE.items() if k != "workflow_id"}, "$.workflow_id", id="no workflow id"),
        pytest.param({**WHOLE, "workflow_id": ""}, "$.workflow_id", id="an empty workflow id"),
        pytest.param({**WHOLE, "workflow_id": "w" * 256}, "$.workflow_id", id="a workflow id too long"),
        pytest.param({**WHOLE, "position": -1}, "$.position", id="a negative position"),
        pytest.param({**WHOLE, "position": "2"}, "$.position", id="a position as text"),
        pytest.param({**WHOLE, "attempt": 2**31}, "$.attempt", id="an attempt out of range"),
        pytest.param({**WHOLE, "attempt": True}, "$.attempt", id="an attempt that is a boolean"),
        pytest.param({k: v for k, v in WHOLE.items() if k != "attempt"}, "$.attempt", id="no attempt"),
        pytest.param(["wf-1", 2, 3], "$", id="not keyword arguments"),
    ],
)
def test_an_identity_that_cannot_be_read_is_refused_naming_the_field(fields: Any, path: str):
    with pytest.raises(InvalidInput) as refused:
        AttemptIdentity.read(fields)
    assert refused.value.path == path


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (InvalidInput("$.x", "unknown field"), "upgrade the workers to the engines' release"),
        (InvalidInput("$.v", "flow.run_activity version 2 is from a newer release"), "upgrade the workers"),
        (InvalidInput("$.start_to_close_s", "must be a number of at least 0"), "run the engines' release"),
    ],
)
def test_the_failure_says_what_could_not_be_read_and_what_to_do(error: InvalidInput, advice: str):
    text = unreadable_error(error)
    assert text.startswith(f"this worker cannot read the attempt: {error}; ")
    assert advice in text


def test_the_failure_is_a_temporary_one_of_that_attempt_that_the_engine_reads():
    result = IDENTITY.failed("this worker cannot read the attempt: $.x: unknown field")
    assert (result.workflow_id, result.position, result.attempt) == ("wf-1", 2, 3)
    assert (result.outcome, result.started_at, result.finished_at) == (Outcome.TEMPORARY_FAILURE, None, None)
    assert AttemptResult.from_kwargs(result.to_kwargs()) == result
