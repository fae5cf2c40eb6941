"""Concurrency limits across a restart: a slot held by a cancelled workflow's attempt
across a restart of the embedded flow (the in-process broker and its workers die with
the process): the restarted engine ends the lost attempt (a late failure on the step),
which gives the slot back."""

from __future__ import annotations

from flow.persistence.limits import LimitTable
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

DEFINITIONS = {
    "Holder": {
        "name": "Holder",
        "activities": [
            # An activity that does not heartbeat (so a cancel cannot stop it) and has no
            # timeouts: the defaults.
            {
                "id": "call",
                "name": "DoSomethingActivity",
                "config": {"sleep_s": 15},
                "concurrency": {"name": "one_at_a_time", "limit": 1},
            }
        ],
    },
}


def _held(flow) -> int:
    found = LimitTable(flow.runtime.store.database).usage("one_at_a_time")
    return found[0].held if found else 0


def test_a_slot_held_by_a_cancelled_workflow_comes_back_after_a_restart(tmp_path):
    with flow_of(tmp_path, DEFINITIONS) as before:
        first = before.start("Holder", {})
        wait_for(
            lambda: before.runtime.store.get(first).state.activities[0].status.value == "Started",
            timeout_s=30,
            what="the first attempt to start",
        )
        before.runtime.service.cancel(first, reason="not needed")
        assert before.wait(first, timeout_s=30).state.status == "Cancelled"
        assert _held(before) == 1  # the attempt runs on: it holds its slot (fair)
    # The process "died": its workers and in-process messages are gone.
    with flow_of(tmp_path, DEFINITIONS) as after:
        second = after.start("Holder", {"again": True})
        # The first attempt's worker is gone; 15 s (its sleep) later the slot is still held.
        ended = after.wait(second, timeout_s=40).state.status
        assert ended == "Finished", f"second workflow {ended}; slots held: {_held(after)}"
