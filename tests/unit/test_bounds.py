"""A definition that validates can always run (invariant 9): every number the engine
computes with is bounded by the schema, and at the bounds nothing overflows.

The maxima are read from the schema itself, so raising one without making the
arithmetic safe fails here.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow.core.decide import decide
from flow.core.definition import SCHEMA, Definition, parse
from flow.core.events import ActivityCompleted, ActivityStarted, TimerFired, WorkflowStarted
from flow.core.state import WorkflowState, WorkflowStatus
from flow.engine.planning import Routes, plan

RETRY = SCHEMA["$defs"]["retry"]["properties"]
TIMEOUTS = SCHEMA["$defs"]["timeouts"]["properties"]
KNOWN = {"NoopActivity"}
#: The engine's clock; the last year datetime can hold leaves room for the longest timer.
NOW = datetime(2026, 11, 29, 12, 0, 0)


def test_every_number_in_the_schema_has_a_maximum():
    for name, prop in {**RETRY, **TIMEOUTS}.items():
        assert prop["type"] in ("integer", "number"), name
        assert "maximum" in prop, f"{name} has no maximum: a definition could validate and never run"


def definition(retry: dict[str, Any], timeouts: dict[str, Any]) -> Definition:
    activity_timeouts = {k: v for k, v in timeouts.items() if k != "workflow_s"}
    body = {
        "name": "Bounded",
        "config": {"retry": retry, "timeouts": timeouts},
        "activities": [
            {"name": "NoopActivity", "config": {"timeouts": activity_timeouts}},
            {"name": "NoopActivity", "independent": True},
        ],
    }
    return parse(body, known_activities=KNOWN)  # it validates, so it must run


def state_of(d: Definition) -> WorkflowState:
    """The state the store builds from a definition (``Starts.create_workflow``)."""
    return WorkflowState(
        id="wf-bounds",
        name=d.name,
        definition_version=1,
        status=WorkflowStatus.IN_PROGRESS,
        input_data={},
        config=d.config,
        activities=d.initial_activities(),
        created_at=NOW,
    )


def run_every_attempt_to_failure(d: Definition) -> int:
    """Drive the pure engine through every attempt of activity 0 failing, planning each
    decision's messages as the engine does; return how many attempts ran."""
    state = state_of(d)
    decision = decide(state, WorkflowStarted(occurred_at=NOW))
    planned(decision)
    attempts = 0
    while decision.state.activities[0].status.value != "Failed":
        state = decision.state
        attempt = state.activities[0].attempt
        attempts += 1
        for event in (
            ActivityStarted(0, attempt, occurred_at=NOW),
            ActivityCompleted(0, attempt, "TEMPORARY_FAILURE", occurred_at=NOW, error="no"),
            TimerFired("retry", 0, attempt + 1, occurred_at=NOW),
        ):
            decision = decide(decision.state, event)
            planned(decision)
            if decision.state.activities[0].status.value == "Failed":
                break
    return attempts


def planned(decision) -> None:
    """Plan the decision's messages and timers as the engine does: nothing overflows."""
    result = plan(
        decision.state,
        ((command, NOW) for command in decision.commands),
        Routes(partition=0, reply_to="flow.engine.0", activity_queue="flow.activities"),
        send_after=NOW,
    )
    for timer in result.timers_set:
        assert timer.due_at >= NOW
    for outgoing in result.owed:
        outgoing.message().encode()


MAXIMA = {name: prop["maximum"] for name, prop in RETRY.items()}
MINIMA = {name: prop.get("minimum", 0) for name, prop in RETRY.items()}
CORNERS = [
    # Everything at its maximum.
    MAXIMA,
    # The overflow that stopped engines: the smallest delay, the largest factor, the
    # most attempts (100.0 ** 999 is not a float).
    {**MAXIMA, "initial_delay_ms": 1, "backoff": float(MAXIMA["backoff"]), "jitter": 0},
    {**MAXIMA, "initial_delay_ms": 1, "backoff": 1.5},
    {**MAXIMA, "initial_delay_ms": 0},
    {**MAXIMA, "max_delay_ms": 0},
    {**MAXIMA, "backoff": 1},
    {**MINIMA, "max_attempts": MAXIMA["max_attempts"]},
]


@pytest.mark.parametrize("retry", CORNERS, ids=range(len(CORNERS)))
def test_a_definition_at_the_schema_bounds_runs_every_attempt(retry):
    timeouts = {name: prop["maximum"] for name, prop in TIMEOUTS.items()}
    assert run_every_attempt_to_failure(definition(retry, timeouts)) == retry["max_attempts"]


def test_at_the_largest_factor_the_delay_reaches_the_cap_and_stays_there():
    retry = {**MAXIMA, "initial_delay_ms": 1, "backoff": float(MAXIMA["backoff"]), "jitter": 0}
    policy = state_of(definition(retry, {})).activities[0].retry
    delays = [policy.delay_ms(n, seed="s") for n in range(1, MAXIMA["max_attempts"] + 1)]
    assert delays[:3] == [1, 100, 10_000]
    assert delays[-1] == MAXIMA["max_delay_ms"]
    assert delays == sorted(delays)


def number(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    low = prop.get("minimum", prop.get("exclusiveMinimum", 0))
    if prop["type"] == "integer":
        return st.integers(low, prop["maximum"])
    return st.floats(low, prop["maximum"], exclude_min="exclusiveMinimum" in prop)


@settings(max_examples=60, deadline=None)
@given(
    retry=st.fixed_dictionaries({}, optional={name: number(prop) for name, prop in RETRY.items()}),
    timeouts=st.fixed_dictionaries({}, optional={name: number(prop) for name, prop in TIMEOUTS.items()}),
    failed=st.lists(st.integers(1, MAXIMA["max_attempts"]), max_size=5),
)
def test_any_definition_within_the_bounds_plans_every_retry_and_timer(retry, timeouts, failed):
    started = decide(state_of(definition(retry, timeouts)), WorkflowStarted(occurred_at=NOW))
    planned(started)  # the workflow and schedule-to-start timers
    for activity, attempt in itertools.product(started.state.activities, [1, 2, *failed]):
        delay = activity.retry.delay_ms(attempt, seed=f"wf:{attempt}")
        assert 0 <= delay <= activity.retry.max_delay_ms * (1 + activity.retry.jitter)
        assert NOW + timedelta(milliseconds=delay) >= NOW  # a retry timer's due time
