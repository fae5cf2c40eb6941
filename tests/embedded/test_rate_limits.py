"""Rate limits end to end on the embedded flow (SQLite), alone and beside a concurrency
limit of the same name: a rate set or raised at run time, a stray rate on a concurrency
limit, idle keys that leave no state behind (each test came from a review's defect)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

DEFINITIONS = {
    # One name, "shared", used as a concurrency limit of 1 by one definition and as a
    # rate limit by another: nothing refuses it (definitions are checked one at a time).
    "OneAtATime": {
        "name": "OneAtATime",
        "activities": [
            {
                "id": "call",
                "name": "DoSomethingActivity",
                "config": {"sleep_s": 1.0},
                "concurrency": {"name": "shared", "limit": 1},
            }
        ],
    },
    "Paced": {
        "name": "Paced",
        "activities": [
            {"id": "send", "name": "DoSomethingActivity", "rate_limit": {"name": "shared", "per_s": 1000, "burst": 100}}
        ],
    },
    # A named rate limit, its rate set at run time, and a named concurrency limit whose
    # name sorts after it.
    "AaaSlow": {
        "name": "AaaSlow",
        "activities": [{"id": "send", "name": "DoSomethingActivity", "rate_limit": {"name": "aaa_slow"}}],
    },
    "Held": {
        "name": "Held",
        "activities": [{"id": "call", "name": "DoSomethingActivity", "concurrency": {"name": "conc_only"}}],
    },
    "PerUser": {
        "name": "PerUser",
        "activities": [
            {"id": "send", "name": "DoSomethingActivity", "rate_limit": {"key": "input.user", "per_s": 100}}
        ],
    },
    "Raised": {
        "name": "Raised",
        "activities": [{"id": "send", "name": "DoSomethingActivity", "rate_limit": {"name": "raised_rate"}}],
    },
    "ZzzNamed": {
        "name": "ZzzNamed",
        "activities": [{"id": "call", "name": "DoSomethingActivity", "concurrency": {"name": "zzz_named"}}],
    },
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("rate_limits"), DEFINITIONS) as running:
        yield running


def _in_flight(flow: EmbeddedFlow) -> int:
    """OneAtATime's steps in flight now (what its limit of 1 bounds)."""
    row = flow.runtime.store.database.execute_sql(
        "SELECT count(*) FROM activities a JOIN workflows w ON w.id = a.workflow_id "
        "WHERE w.definition_name = 'OneAtATime' AND a.status IN ('Scheduled', 'Started')"
    ).fetchone()
    return int(row[0])


def _queued(flow: EmbeddedFlow) -> int:
    row = flow.runtime.store.database.execute_sql(
        "SELECT count(*) FROM activities a JOIN workflows w ON w.id = a.workflow_id "
        "WHERE w.definition_name = 'OneAtATime' AND a.status = 'Queued'"
    ).fetchone()
    return int(row[0])


def test_a_concurrency_limit_holds_when_a_rate_limit_shares_its_name(flow):
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, _in_flight(flow))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        limited = [flow.start("OneAtATime", {"n": n}) for n in range(4)]
        wait_for(lambda: _in_flight(flow) == 1 and _queued(flow) == 3, timeout_s=30, what="3 queued behind 1")
        paced = flow.start("Paced", {}, priority=1)  # waits first in the shared queue
        for workflow_id in [*limited, paced]:
            assert flow.wait(workflow_id, timeout_s=60).state.status == "Finished"
    finally:
        stop.set()
        sampler.join(5)
    assert peak <= 1, f"{peak} steps of a limit of 1 were in flight at once"


def test_a_rate_limited_step_behind_a_concurrency_waiter_of_its_name_is_let_in(flow):
    limited = [flow.start("OneAtATime", {"second": n}) for n in range(2)]
    wait_for(lambda: _in_flight(flow) == 1 and _queued(flow) == 1, timeout_s=30, what="1 queued behind 1")
    paced = flow.start("Paced", {}, priority=5)  # waits behind the concurrency waiter
    ended = {w: flow.wait(w, timeout_s=20).state.status for w in [*limited, paced]}
    assert set(ended.values()) == {"Finished"}, ended


def test_a_tiny_rate_set_at_run_time_does_not_stop_other_limits(flow):
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    refused = client.simulate_put("/limits/aaa_slow", json={"per_s": 1e-12})
    assert refused.status_code == 422, refused.text  # too slow to pace: refused, naming per_s
    assert [e["path"] for e in refused.json["errors"]] == ["$.per_s"]
    answer = client.simulate_put("/limits/aaa_slow", json={"per_s": 0.001})  # the slowest rate
    assert answer.status_code == 200, answer.text
    slow = [flow.start("AaaSlow", {"n": n}) for n in range(2)]
    waiting = flow.start("ZzzNamed", {})
    wait_for(
        lambda: (
            client.simulate_get("/limits/zzz_named").json["waiting"] == 1
            and client.simulate_get("/limits/aaa_slow").json["waiting"] >= 1
        ),
        timeout_s=30,
        what="both limits to have a waiter",
    )
    assert client.simulate_put("/limits/zzz_named", json={"limit": 5}).status_code == 200
    # FLOW_LIMITS_POLL_S is well under this in the embedded defaults: several full passes.
    assert flow.wait(waiting, timeout_s=20).state.status == "Finished"
    del slow


def test_a_concurrency_limit_with_a_stray_rate_is_still_shown_as_one(flow):
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    flow.start("Held", {})
    wait_for(lambda: client.simulate_get("/limits/conc_only").json["waiting"] == 1, timeout_s=30)
    assert client.simulate_put("/limits/conc_only", json={"per_s": 5}).status_code == 200
    shown = client.simulate_get("/limits/conc_only").json
    assert (shown["kind"], shown["waiting"]) == ("concurrency", 1), shown


def test_a_rate_limits_idle_keys_leave_no_state_behind(flow):
    ids = [flow.start("PerUser", {"user": f"u{n}"}) for n in range(40)]
    for workflow_id in ids:
        assert flow.wait(workflow_id, timeout_s=60).state.status == "Finished"
    database = flow.runtime.store.database
    wait_for(
        lambda: (
            database.execute_sql(
                "SELECT count(*) FROM limit_rates WHERE name = 'PerUser:send' AND tat > datetime('now')"
            ).fetchone()[0]
            == 0
        ),
        timeout_s=10,
        what="every key's arrival time to pass",
    )
    one_more = flow.start("PerUser", {"user": "one more"})  # another admission of the limit
    assert flow.wait(one_more, timeout_s=30).state.status == "Finished"
    kept = database.execute_sql("SELECT count(*) FROM limit_rates WHERE name = 'PerUser:send'").fetchone()[0]
    assert kept <= 1, f"{kept} rows of idle keys kept, each read by every admission of the limit"


def test_a_raised_rate_applies_at_once_to_what_waits(flow):
    """At the slowest rate the second step would wait ~1,000 s; raised, it starts at once
    (the keys' pacing starts afresh with the new rate)."""
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    assert client.simulate_put("/limits/raised_rate", json={"per_s": 0.001}).status_code == 200
    first, second = flow.start("Raised", {}), flow.start("Raised", {})
    assert flow.wait(first, timeout_s=30).state.status == "Finished"
    wait_for(lambda: client.simulate_get("/limits/raised_rate").json["waiting"] == 1, timeout_s=30)
    assert client.simulate_put("/limits/raised_rate", json={"per_s": 100}).status_code == 200
    assert flow.wait(second, timeout_s=30).state.status == "Finished"
