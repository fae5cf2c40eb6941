"""Heartbeats and cancellation reaching a running attempt, end to end in one process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for

RETRY = {"max_attempts": 3, "initial_delay_ms": 10, "jitter": 0}

DEFINITIONS = {
    # The first attempt fails after 3 of 6 steps; the second resumes from step 3.
    "Resume": {
        "name": "Resume",
        "config": {"retry": RETRY},
        "activities": [{"name": "BeatActivity", "config": {"steps": 6, "step_s": 0.02, "fail_after": 3}}],
    },
    # Beats for ever (in effect) until told to stop.
    "Endless": {
        "name": "Endless",
        "activities": [{"name": "BeatActivity", "config": {"steps": 10_000_000, "step_s": 0.01}}],
    },
    # The first attempt stops beating for 4 s after one step: its heartbeat_s of 1 s
    # fails it long before, and the second attempt runs to its end (2 s). The first,
    # beating again, is told to stop.
    "Stall": {
        "name": "Stall",
        "config": {"retry": RETRY},
        "activities": [
            {
                "name": "BeatActivity",
                "config": {"steps": 100, "step_s": 0.02, "stall_s": 4, "timeouts": {"heartbeat_s": 1}},
            }
        ],
    },
}


@pytest.fixture
def flow(tmp_path, definitions_dir) -> Iterator[EmbeddedFlow]:
    for name, body in DEFINITIONS.items():
        (definitions_dir / f"{name}.json").write_text(json.dumps(body))
    settings = Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True)
    with EmbeddedFlow(settings) as running:
        yield running


def history(flow: EmbeddedFlow, workflow_id: str) -> list[dict]:
    return flow.runtime.store.events(workflow_id, limit=10_000)


def test_a_failed_attempt_hands_its_last_heartbeat_to_the_next_one(flow):
    workflow_id = flow.start("Resume")
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished"
    assert state.output == {"BeatActivity": {"resumed_from": 3, "done": 6, "attempt": 2}}
    # The first attempt's last details were sent with its failure ({"done": 3}); the
    # second's first heartbeat is sent at once, its later ones kept (30 s throttle) and
    # dropped when it succeeded.
    assert state.activities[0].heartbeat == {"done": 4}


def test_cancelling_a_workflow_stops_its_running_activity(flow):
    workflow_id = flow.start("Endless")
    wait_for(
        lambda: any(e["type"] == "activity-heartbeat" for e in history(flow, workflow_id)),
        timeout_s=30,
        what="a heartbeat",
    )
    flow.runtime.service.cancel(workflow_id, reason="stop it")
    # The attempt ends Cancelled: the notice reached it and its next heartbeat raised.
    wait_for(
        lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Cancelled",
        timeout_s=30,
        what="the running activity cancelled",
    )
    state = flow.runtime.store.get(workflow_id).state
    assert state.status == "Cancelled"
    results = [e for e in history(flow, workflow_id) if e["type"] == "activity-result"]
    assert [r["data"]["outcome"] for r in results] == ["CANCELLED"]
    assert state.activities[0].heartbeat["done"] >= 1


def test_an_attempt_that_stops_beating_fails_and_is_told_to_stop_when_it_beats_again(flow):
    workflow_id = flow.start("Stall")
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished"
    events = history(flow, workflow_id)
    fired = [e for e in events if e["type"] == "timer-fired" and e["data"]["kind"] == "heartbeat"]
    # Attempt 1 timed out (a later attempt could too, on a machine too busy to beat every 0.5 s).
    assert fired[0]["data"]["attempt"] == 1
    assert state.output["BeatActivity"]["attempt"] >= 2
    assert [e["data"]["attempt"] for e in events if e["type"] == "reschedule-activity"][0] == 2
    # Attempt 1 wakes from its stall, beats, is told to stop, and stops.
    wait_for(
        lambda: (
            [
                e["data"]["outcome"]
                for e in history(flow, workflow_id)
                if e["type"] == "activity-result" and e["data"]["attempt"] == 1
            ]
            == ["CANCELLED"]
        ),
        timeout_s=30,
        what="attempt 1 stopped",
    )
    stops = [e for e in history(flow, workflow_id) if e["type"] == "cancel-attempt"]
    assert stops and stops[0]["data"] == {"attempt": 1, "reason": "attempt 1 is not the current one"}
