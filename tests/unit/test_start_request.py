"""The start request, validated in one place for every door: HTTP (tested through the
API), the AMQP body (``parse_start``) and the Dramatiq message's decoded arguments
(``parse_start_request``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.core.definition import is_definition_name
from flow.core.start_request import SCHEMA, SCHEMA_WITH_ID, StartRequest, parse_start_request
from flow.core.strict_json import check
from flow.errors import InvalidInput, InvalidJson
from flow.process.amqp_start import parse_start
from tests.hostile import START_BODIES, hostile_start_texts


def test_a_start_request_with_defaults():
    assert parse_start_request({"name": "W"}) == StartRequest("W", {}, None)
    assert parse_start_request({"name": "W"}).priority == 3
    assert parse_start_request({"name": "W", "input_data": None, "idempotency_key": None}) == StartRequest("W")
    full = {"name": "W", "input_data": {"a": [1]}, "idempotency_key": "k"}
    assert parse_start_request(full) == StartRequest("W", {"a": [1]}, "k")


DECODED_REFUSED = [
    # What Dramatiq's decoder (or a Python caller) can hand over: (fields, path).
    ([("name", "W")], "$"),
    ("W", "$"),
    ({"name": ["W"]}, "$.name"),
    ({"name": None}, "$.name"),
    ({"name": "W\x00"}, "$.name"),
    ({"name": "W\ud800"}, "$.name"),
    ({"name": "W X"}, "$.name"),
    ({"name": "W", "input_data": [1]}, "$.input_data"),
    ({"name": "W", "input_data": {"a": float("nan")}}, "$.input_data.a"),
    ({"name": "W", "input_data": {"a": 10**5000}}, "$.input_data.a"),
    ({"name": "W", "input_data": {"k\x00": 1}}, '$.input_data["k\\u0000"]'),
    ({"name": "W", "input_data": {"s": {1, 2}}}, "$.input_data.s"),
    ({"name": "W", "idempotency_key": 7}, "$.idempotency_key"),
    ({"name": "W", "idempotency_key": ""}, "$.idempotency_key"),
    ({"name": "W", "idempotency_key": "k" * 256}, "$.idempotency_key"),
    ({"name": "W", "workflow_id": "x"}, "$.workflow_id"),  # not allowed at this door
    ({"name": "W", "status": "Finished"}, "$.status"),
    ({"name": "W", "priority": 0}, "$.priority"),
    ({"name": "W", "priority": 6}, "$.priority"),
    ({"name": "W", "priority": -1}, "$.priority"),
    ({"name": "W", "priority": "1"}, "$.priority"),
    ({"name": "W", "priority": 1.5}, "$.priority"),
    ({"name": "W", "priority": 2.0}, "$.priority"),
    ({"name": "W", "priority": True}, "$.priority"),
    ({"name": "W", "priority": [1]}, "$.priority"),
    ({"name": "W", "priority": 10**30}, "$.priority"),
]


@pytest.mark.parametrize(("fields", "path"), DECODED_REFUSED, ids=[p for _, p in DECODED_REFUSED])
def test_decoded_fields_are_refused_with_their_path(fields, path):
    with pytest.raises(InvalidInput) as info:
        parse_start_request(fields)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"input_data": {}}, "$.name", "required: the name of a registered workflow definition"),
        ({"name": "W", "status": "x", "colour": 1}, "$.colour", "unknown field; allowed: name, input_data,"),
        ({"name": "W X"}, "$.name", "must be the name of a registered workflow definition, matching ^"),
        ({"name": "W\n"}, "$.name", "must be the name of a registered workflow definition"),
        ({"name": "W", "idempotency_key": ""}, "$.idempotency_key", "must be a string of 1 to 255 characters"),
        ({"name": "W", "input_data": 3}, "$.input_data", "must be a JSON object"),
        (["name"], "$", "must be a JSON object"),
    ],
)
def test_a_refusal_says_what_the_schema_asks_for(fields, path, message):
    with pytest.raises(InvalidInput) as info:
        parse_start_request(fields)
    assert info.value.path == path
    assert info.value.message.startswith(message)


PRIORITIES = [
    # (the request's priority field, the priority it starts with)
    ({}, 3),
    ({"priority": None}, 3),
    ({"priority": 1}, 1),
    ({"priority": 2}, 2),
    ({"priority": 3}, 3),
    ({"priority": 4}, 4),
    ({"priority": 5}, 5),
]


@pytest.mark.parametrize(("field", "priority"), PRIORITIES, ids=[str(f) for f, _ in PRIORITIES])
@pytest.mark.parametrize("allow_workflow_id", [False, True], ids=["http-amqp", "dramatiq"])
def test_a_priority_from_1_to_5_is_taken_and_none_is_3(field, priority, allow_workflow_id):
    assert parse_start_request({"name": "W", **field}, allow_workflow_id=allow_workflow_id).priority == priority


@pytest.mark.parametrize("bad", [0, 6, 2.0, 1.5, "1", True, False, [3], {"p": 3}])
def test_a_priority_that_is_not_an_integer_from_1_to_5_is_refused_naming_the_field(bad):
    with pytest.raises(InvalidInput) as info:
        parse_start_request({"name": "W", "priority": bad})
    assert info.value.path == "$.priority"
    assert info.value.message == "must be an integer from 1 (first) to 5 (last), default 3"


def test_the_amqp_body_carries_a_priority():
    assert parse_start(b'{"name": "W", "priority": 1}').priority == 1
    with pytest.raises(InvalidInput, match=r"\$\.priority"):
        parse_start(b'{"name": "W", "priority": 1.0}')


def test_every_example_of_the_schema_is_a_valid_request():
    for example in [*SCHEMA["examples"], *SCHEMA_WITH_ID.get("examples", [])]:
        assert_a_valid_request(parse_start_request(example))


def test_the_dramatiq_door_may_name_the_workflow_id():
    assert parse_start_request({"name": "W", "workflow_id": "wf-1"}, allow_workflow_id=True).workflow_id == "wf-1"
    for bad in ("", "x" * 37, "a\x00", 5):
        with pytest.raises(InvalidInput, match=r"\$\.workflow_id"):
            parse_start_request({"name": "W", "workflow_id": bad}, allow_workflow_id=True)


#: All but the input too big: that limit is the engine's (FLOW_MAX_PAYLOAD_BYTES), after parsing.
AMQP_BODIES = [c for c in START_BODIES if c[0] != "input too big"]


@pytest.mark.parametrize(("case", "body", "status", "path"), AMQP_BODIES, ids=[c[0] for c in AMQP_BODIES])
def test_the_amqp_body_is_refused_as_the_http_body_is(case, body, status, path):
    if case == "unknown name":
        assert parse_start(body).name == "NoSuchWorkflow"  # the engine says it does not exist
        return
    with pytest.raises(InvalidInput) as info:
        parse_start(body)
    assert info.value.path == path
    if case != "empty":  # HTTP reads an empty body as null (a body is optional for some routes)
        assert isinstance(info.value, InvalidJson) == (status == 400)


# -- properties: any input is a valid request or InvalidInput, nothing else -------------


def assert_a_valid_request(request: StartRequest) -> None:
    assert is_definition_name(request.name)
    assert isinstance(request.input_data, dict)
    check(dict(request.input_data))
    assert request.idempotency_key is None or 0 < len(request.idempotency_key) <= 255
    assert type(request.priority) is int and 1 <= request.priority <= 5
    json.dumps(request.input_data, allow_nan=False).encode("utf-8")  # storable and printable


PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(body=hostile_start_texts())
def test_any_amqp_body_is_a_valid_request_or_refused(body):
    try:
        request = parse_start(body)
    except InvalidInput as e:
        assert e.path.startswith("$") and e.message
        return
    assert_a_valid_request(request)


PYTHON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 10, max_value=2**70)
    | st.floats()
    | st.text()
    | st.sampled_from(["W\x00", "\ud800", "DummyWorkflow", "a b"])
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.sets(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELD_NAMES = st.sampled_from(["name", "input_data", "idempotency_key", "workflow_id", "priority", "extra", "n\x00"])


@PROPERTIES
@given(
    fields=st.dictionaries(FIELD_NAMES, PYTHON_VALUES, max_size=4) | PYTHON_VALUES,
    allow_workflow_id=st.booleans(),
)
def test_any_decoded_dramatiq_arguments_are_a_valid_request_or_refused(fields: Any, allow_workflow_id: bool):
    try:
        request = parse_start_request(fields, allow_workflow_id=allow_workflow_id)
    except InvalidInput as e:
        assert e.path.startswith("$") and e.message
        return
    assert_a_valid_request(request)
