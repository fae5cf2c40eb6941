"""Search attributes, the pure parts: declarations, start values, what an activity sets,
the wire form, the ``attr.*`` filter's parsing, and ``decide`` recording what an
accepted result set (and nothing for a stale one)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from activities.base import BaseActivity
from flow.core import attributes
from flow.core.attributes import BOOLEAN, NUMBER, STRING, TIME, Condition
from flow.core.decide import decide
from flow.core.definition import DefinitionError, parse
from flow.core.start_request import parse_start_request
from flow.core.timestamps import parse_iso
from flow.core.vocabulary import HistoryType, Outcome
from flow.errors import InvalidInput
from flow.persistence.attributes import last_wins, rows, set_by
from flow.wire.messages import AttemptResult
from flow.worker.execution import execute
from tests.unit.test_decide import SEQ, S, completed, make_state, with_statuses
from tests.unit.test_execution import request

DECLARED = {"customer": STRING, "amount": NUMBER, "vip": BOOLEAN, "due": TIME}
DUE = datetime(2026, 12, 24)


def test_start_values_are_typed_by_the_declarations():
    given = {"customer": "acme", "amount": 120, "vip": True, "due": "2026-12-24T01:00:00+01:00"}
    assert attributes.check_declared(DECLARED, given, path="$.attributes") == {
        "customer": (STRING, "acme"),
        "amount": (NUMBER, 120.0),
        "vip": (BOOLEAN, True),
        "due": (TIME, DUE),
    }


@pytest.mark.parametrize(
    ("given", "path", "says"),
    [
        ({"colour": "red"}, "$.attributes.colour", "declares: amount, customer, due, vip"),
        ({"amount": "120"}, "$.attributes.amount", "must be a number"),
        ({"amount": True}, "$.attributes.amount", "must be a number"),
        ({"vip": 1}, "$.attributes.vip", "must be a boolean"),
        ({"customer": 7}, "$.attributes.customer", "must be a string"),
        ({"customer": "x" * 256}, "$.attributes.customer", "at most 255"),
        ({"due": "tomorrow"}, "$.attributes.due", "ISO 8601"),
    ],
)
def test_an_undeclared_name_or_a_wrong_type_is_refused_naming_it(given, path, says):
    with pytest.raises(InvalidInput) as refused:
        attributes.check_declared(DECLARED, given, path="$.attributes")
    assert refused.value.path == path and says in refused.value.message


def test_every_door_reads_attributes_from_its_start_request():
    body = {"name": "Order", "attributes": {"customer": "acme", "amount": 1.5}}
    assert parse_start_request(body).attributes == {"customer": "acme", "amount": 1.5}
    assert parse_start_request({"name": "Order"}).attributes == {}
    for bad in ({"customer": ["a"]}, {"a.b": 1}, {f"n{i}": 1 for i in range(33)}):
        with pytest.raises(InvalidInput, match="attributes"):
            parse_start_request({"name": "Order", "attributes": bad})


def test_a_definition_declares_names_and_types():
    body = {"name": "W", "attributes": {"customer": "string"}, "activities": [{"name": "NoopActivity"}]}
    assert parse(body, known_activities={"NoopActivity"}).attributes == {"customer": "string"}
    for bad in ({"customer": "text"}, {"bad.name": "string"}, {"a\n": "string"}):
        with pytest.raises(DefinitionError, match="attributes"):
            parse({**body, "attributes": bad}, known_activities={"NoopActivity"})


def test_set_attribute_types_by_the_python_value_and_the_wire_form_reads_back():
    values = {
        "stage": attributes.typed_value("stage", "shipped"),
        "count": attributes.typed_value("count", 3),
        "paid": attributes.typed_value("paid", False),
        "due": attributes.typed_value("due", DUE),
    }
    assert values == {
        "stage": (STRING, "shipped"),
        "count": (NUMBER, 3.0),
        "paid": (BOOLEAN, False),
        "due": (TIME, DUE),
    }
    wire = attributes.to_wire(values)
    assert wire["due"] == {"type": "time", "value": "2026-12-24T00:00:00Z"}
    assert attributes.from_wire(wire, path="$.attributes") == values
    for name, value in (("a.b", 1), ("ok", [1]), ("ok", float("nan")), ("ok", None)):
        with pytest.raises(InvalidInput):
            attributes.typed_value(name, value)


@pytest.mark.parametrize(
    "bad",
    [[], {"x": 1}, {"x": {"type": "colour", "value": 1}}, {"x": {"type": "number", "value": "1"}}, {"a-b": {}}],
)
def test_a_result_message_with_malformed_attributes_is_refused_before_anything_is_stored(bad):
    kwargs = {"workflow_id": "w", "position": 0, "attempt": 1, "outcome": "SUCCEEDED", "attributes": bad}
    with pytest.raises(InvalidInput, match=r"\$\.attributes"):
        AttemptResult.from_kwargs(kwargs)


def test_a_result_without_attributes_reads_as_before_they_existed():
    result = AttemptResult(workflow_id="w", position=0, attempt=1, outcome=Outcome.SUCCEEDED)
    assert "attributes" not in result.to_kwargs()
    assert AttemptResult.from_kwargs(result.to_kwargs()) == result


@pytest.mark.parametrize(
    ("parameter", "text", "condition"),
    [
        ("attr.customer", "acme", Condition("customer", "eq", ((STRING, "acme"),), "acme")),
        ("attr.code", "42", Condition("code", "eq", ((NUMBER, 42.0), (STRING, "42")), "42")),
        ("attr.vip", "true", Condition("vip", "eq", ((BOOLEAN, True), (STRING, "true")), "true")),
        ("attr.amount.gt", "100", Condition("amount", "gt", ((NUMBER, 100.0),), "100")),
        ("attr.amount.ne", "5.5", Condition("amount", "ne", ((NUMBER, 5.5),), "5.5")),
        ("attr.due.lte", "2026-12-24T00:00:00Z", Condition("due", "lte", ((TIME, DUE),), "2026-12-24T00:00:00Z")),
        ("attr.due", "2026-12-24", Condition("due", "eq", ((TIME, DUE), (STRING, "2026-12-24")), "2026-12-24")),
    ],
)
def test_a_condition_reads_its_text_as_every_type_it_can_be(parameter, text, condition):
    assert attributes.parse_condition(parameter, text) == condition
    assert condition.parameter == parameter


@pytest.mark.parametrize(
    ("parameter", "text", "says"),
    [
        ("attr.amount.gt", "lots", "gt compares numbers and times"),
        ("attr.amount.ne", "true", "ne compares numbers and times"),
        ("attr.amount.between", "1", "the operator must be one of eq, ne, gt, gte, lt, lte"),
        ("attr.", "1", "the name matching"),
        ("attr.a-b", "1", "the name matching"),
        ("attr.amount.gt", "nan", "compares numbers"),
        # eq "compares numbers and times" was wrong: it is text too long for any stored string.
        ("attr.customer", "x" * 256, "a string attribute holds at most 255 characters"),
    ],
)
def test_a_malformed_condition_is_refused_naming_its_parameter(parameter, text, says):
    with pytest.raises(InvalidInput) as refused:
        attributes.parse_condition(parameter, text)
    assert refused.value.path == parameter and says in refused.value.message


def test_only_attr_parameters_are_conditions_and_there_is_a_bound():
    assert attributes.parse_conditions([("status", "Failed"), ("attr.a", "1"), ("attr.a", "2")]) == (
        Condition("a", "eq", ((NUMBER, 1.0), (STRING, "1")), "1"),
        Condition("a", "eq", ((NUMBER, 2.0), (STRING, "2")), "2"),
    )
    with pytest.raises(InvalidInput, match="at most 8"):
        attributes.parse_conditions([(f"attr.a{i}", "1") for i in range(9)])


def test_decide_records_what_an_accepted_result_set_and_the_shell_writes_it():
    state = with_statuses(make_state(SEQ, SEQ), S.SCHEDULED, S.PENDING)
    wire = attributes.to_wire({"stage": (STRING, "shipped")})
    decision = decide(state, replace(completed(0, Outcome.SUCCEEDED), attributes=wire))
    result = next(h for h in decision.history if h.type is HistoryType.ACTIVITY_RESULT)
    assert result.data["attributes"] == wire
    assert set_by("wf-1", [(h, None) for h in decision.history]) == [("wf-1", "stage", "shipped", None, None, None)]

    # The same result again is stale: recorded, but it sets nothing.
    again = decide(decision.state, replace(completed(0, Outcome.SUCCEEDED), attributes=wire))
    assert set_by("wf-1", [(h, None) for h in again.history]) == []


def test_the_last_value_set_for_a_name_wins_within_one_commit():
    first = rows("w", {"stage": (STRING, "packed"), "n": (NUMBER, 1.0)})
    second = rows("w", {"stage": (STRING, "shipped")})
    assert last_wins([*first, *second]) == [
        ("w", "stage", "shipped", None, None, None),
        ("w", "n", None, 1.0, None, None),
    ]


def test_an_activity_setting_more_attributes_than_a_result_may_carry_fails_and_its_result_is_accepted():
    # Before: the worker sent all 40, the engine dead-lettered the result as malformed,
    # and the workflow waited for ever on an attempt whose result it had thrown away.
    class SetsForty(BaseActivity):
        def do_activity(self):
            for n in range(40):
                self.set_attribute(f"a{n}", n)
            return Outcome.SUCCEEDED

    result = execute({"SetsForty": SetsForty}, request("SetsForty", {}))
    assert result.outcome is Outcome.TEMPORARY_FAILURE  # an exception, retried as any other
    assert f"at most {attributes.MAX_ATTRIBUTES}" in (result.error or "")
    accepted = AttemptResult.from_kwargs(result.to_kwargs())  # what the engine reads: not dead-lettered
    assert len(accepted.attributes or {}) == attributes.MAX_ATTRIBUTES


def test_setting_an_attribute_again_does_not_count_twice():
    class SetsOneOften(BaseActivity):
        def do_activity(self):
            for n in range(100):
                self.set_attribute("stage", f"s{n}")
            return Outcome.SUCCEEDED

    result = execute({"SetsOneOften": SetsOneOften}, request("SetsOneOften", {}))
    assert result.outcome is Outcome.SUCCEEDED and result.attributes == {"stage": {"type": "string", "value": "s99"}}


@pytest.mark.parametrize(
    "given", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", ["2026-01-01"], 20261224, "next week"]
)
def test_parse_iso_refuses_with_a_value_error_what_is_not_a_time_in_utc(given):
    # Every caller maps ValueError (to a 422, a dead letter, a None reading); the
    # OverflowError of the calendar's ends and the AttributeError of a non-text reached
    # the client as a 500.
    with pytest.raises(ValueError):
        parse_iso(given)
    if isinstance(given, str):  # nor can a filter read it as one
        assert attributes.readings(given, ordered=True) == ()
