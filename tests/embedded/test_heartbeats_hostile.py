"""Heartbeats and cancellation end to end on the embedded flow (SQLite), against a hostile
review. Each test fails on the code it was written against (264af75) and says in its
docstring what is wrong and what should happen instead."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import falcon.testing
import pytest

from api.app import create_app
from flow.errors import DefinitionError, InvalidInput
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions
from tests.conftest import wait_for

DEFINITIONS = {
    # Beats every 2 s for 6 s; a single attempt allowed.
    "SlowBeat": {
        "name": "SlowBeat",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"name": "BeatActivity", "config": {"steps": 3, "step_s": 2}}],
    },
    # Sleeps 10 minutes (stops at once when cancelled); one heartbeat a second, of which
    # the worker sends the first and then one per 300 s.
    "LongSleep": {
        "name": "LongSleep",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 600, "timeouts": {"heartbeat_s": 600}}}],
    },
}

#: A tight heartbeat loop for 0.3 s under a heartbeat_s of 80 ms; a single attempt.
#: Registered by its test (not from the directory, which a fix may refuse to load).
TIGHT_BEAT = {
    "name": "TightBeat",
    "config": {"retry": {"max_attempts": 1}},
    "activities": [
        {"name": "BeatActivity", "config": {"steps": 30, "step_s": 0.01, "timeouts": {"heartbeat_s": 0.08}}}
    ],
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    base: Path = tmp_path_factory.mktemp("heartbeats_review")
    definitions = write_definitions(base / "workflows", DEFINITIONS)
    env = embedded_env(base, definitions)
    with EmbeddedFlow(Settings.from_env(env, embedded=True)) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def _history(flow: EmbeddedFlow, workflow_id: str) -> list[dict]:
    return flow.runtime.store.events(workflow_id, limit=10_000)


def _strict(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_retry_right_after_a_cancel_runs_the_cancelled_activity_again(flow):
    """Defect (see tests/unit/test_heartbeats_hostile.py for the decide() side): cancel a
    workflow while its activity runs, then retry it from failure before the activity's
    next heartbeat (here within its 2 s step). The activity stays ``Started`` across the
    retry, the cancel notice still stops it at its next heartbeat, and its ``CANCELLED``
    result is counted as a failure of the retried run: with ``max_attempts: 1`` the
    retried workflow ends ``Failed`` ("failed after 1 attempt: cancelled") without the
    activity ever running again.

    Expected: the retry runs the cancelled activity again with a fresh budget (README,
    "Retry from failure") and the workflow ends ``Finished``."""
    workflow_id = flow.start("SlowBeat")
    wait_for(
        lambda: any(e["type"] == "activity-heartbeat" for e in _history(flow, workflow_id)),
        timeout_s=30,
        what="the first heartbeat",
    )
    flow.runtime.service.cancel(workflow_id, reason="oops")
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.status == "Cancelled", timeout_s=30, what="the cancel")
    flow.runtime.service.retry(workflow_id)
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.status == "In Progress", timeout_s=30, what="the retry")
    state = flow.wait(workflow_id, timeout_s=60).state
    assert state.status == "Finished", state.error


@pytest.mark.parametrize("details", ["\ud800", math.nan], ids=["lone-surrogate", "nan"])
def test_a_heartbeat_message_with_details_that_are_not_json_breaks_no_reader(flow, client, details):
    """Defect: heartbeat details are checked strictly only in the worker
    (``Heartbeats._check``). The engine reads ``flow.record_heartbeat`` with ``json.loads``
    and the codec's ``Any`` (no strict check), and ``service.forward`` (the shared engine
    queue's door) checks only signals. A heartbeat message from anything else on the
    broker (an older or foreign worker, a hand-written message) with a lone surrogate in
    its details is stored on the activity, and from then on ``GET /workflows/{id}``
    answers 500 (UnicodeEncodeError) for as long as the workflow exists; ``NaN`` is
    stored and served as ``NaN``, which no strict JSON reader (a browser) can read.

    Expected: such a message is refused (dead-lettered, or refused by ``forward``) like
    every other non-strict input (README, "Bad input"); nothing of it is stored and the
    workflow reads back as strict JSON with 200."""
    workflow_id = flow.start("LongSleep")
    wait_for(
        lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Started",
        timeout_s=30,
        what="the attempt started",
    )
    forged = dramatiq.Message(
        queue_name=flow.settings.engine_queue,
        actor_name="flow.record_heartbeat",
        args=(),
        kwargs={"workflow_id": workflow_id, "position": 0, "attempt": 1, "details": {"done": details}},
        options={},
    )
    try:
        flow.runtime.service.forward(forged)
    except InvalidInput:
        pass  # refused at the door: fine
    # A signal behind it on the same queue: once it is recorded, the heartbeat was handled.
    flow.runtime.service.signal(workflow_id, "marker", None)
    wait_for(
        lambda: any(e["type"] == "signal-received" for e in _history(flow, workflow_id)),
        timeout_s=30,
        what="the marker signal",
    )
    try:
        result = client.simulate_get(f"/workflows/{workflow_id}")
        assert result.status_code == 200
        _strict(result.text)
    finally:
        flow.runtime.service.cancel(workflow_id)
        flow.wait(workflow_id, timeout_s=30)


def test_an_activity_beating_in_a_tight_loop_meets_a_small_heartbeat_s(flow):
    """Defect: ``timeouts.heartbeat_s`` may be any number > 0, and the README says the
    worker sends a heartbeat at least every half ``heartbeat_s``; but the worker never
    sends them closer than 0.1 s apart (``MIN_INTERVAL_S``). An activity calling
    ``heartbeat()`` every 10 ms under ``heartbeat_s: 0.08`` fails with "heartbeat
    timeout: no heartbeat from attempt 1 for 0.08 s" although it never stopped beating.

    Expected: such a definition is refused when registered (a documented minimum), or
    the attempt is not timed out while it beats and the workflow finishes."""
    try:
        flow.runtime.service.register(TIGHT_BEAT)
    except DefinitionError:
        return  # refused: fine
    workflow_id = flow.start("TightBeat")
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished", state.error
