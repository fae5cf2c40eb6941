"""A concurrency limit on a whole workflow, end to end on the embedded flow (SQLite):
never more workflows of a key run than the limit (sampled, and from the stored history),
a queued workflow says so and what it waits for, and every way a workflow ends — it
finishes, is cancelled, deleted — lets the next one in, as does a retry-from-failure
queue again."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import datetime

import falcon.testing
import pytest

from api.app import create_app
from flow.persistence.limits import LimitTable
from flow.process.embedded import EmbeddedFlow
from flow.testing.sampling import PeakSampler
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

DEFINITIONS = {
    "Import": {
        "name": "Import",
        "concurrency": {"key": "input.tenant", "limit": 1, "strategy": "queue"},
        "activities": [
            {"id": "fetch", "name": "DoSomethingActivity", "config": {"sleep_s": 0.03}},
            {"id": "store", "name": "DoSomethingActivity", "config": {"sleep_s": 0.01}},
        ],
    },
    "Measured": {
        "name": "Measured",
        "concurrency": {"key": "length(input.tenant)", "limit": 1},
        "activities": [{"id": "fetch", "name": "DoSomethingActivity"}],
    },
    "Newest": {
        "name": "Newest",
        "concurrency": {"key": "input.tenant", "limit": 1, "strategy": "cancel_newest"},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
    "Latest": {
        "name": "Latest",
        "concurrency": {"key": "input.tenant", "limit": 1, "strategy": "cancel_in_progress"},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
    "Gated": {
        "name": "Gated",
        "concurrency": {"key": "input.tenant", "limit": 1},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("workflow-limits"), DEFINITIONS) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def running(flow: EmbeddedFlow, definition: str) -> PeakSampler:
    """The most workflows of ``definition`` per key that ran at once — had a step out of
    ``Pending`` while ``In Progress`` — read from the rows every 10 ms (not from the
    limit's own count, which is what is under test)."""
    database = flow.runtime.store.database
    sql = (
        "SELECT w.limit_key, count(DISTINCT w.id) FROM workflows w JOIN activities a ON a.workflow_id = w.id "
        "WHERE w.definition_name = ? AND w.status = 'In Progress' AND a.status <> 'Pending' GROUP BY w.limit_key"
    )
    return PeakSampler(lambda: dict(database.execute_sql(sql, (definition,)).fetchall()))


def test_at_most_one_workflow_per_key_runs_and_every_one_finishes(flow):
    with running(flow, "Import") as sampled:
        ids = {flow.start("Import", {"tenant": f"t{n % 3}"}): f"t{n % 3}" for n in range(18)}
        for workflow_id in ids:
            assert flow.wait(workflow_id, timeout_s=60).state.status == "Finished"
    assert sampled.samples > 0
    assert dict(sampled.peak) == {"t0": 1, "t1": 1, "t2": 1}
    # From the history too: per key, each run's span (let in .. finished) starts after the
    # one before it ended.
    spans: dict[str, list[tuple[datetime, datetime]]] = collections.defaultdict(list)
    database = flow.runtime.store.database
    for workflow_id, admitted, finished in database.execute_sql(
        "SELECT w.id, e.occurred_at, w.finished_at FROM workflows w JOIN events e ON e.workflow_id = w.id "
        "WHERE w.definition_name = 'Import' AND e.type = 'admit-workflow'"
    ).fetchall():
        spans[ids[workflow_id]].append((datetime.fromisoformat(str(admitted)), datetime.fromisoformat(str(finished))))
    for tenant, runs in spans.items():
        runs.sort()
        assert len(runs) == 6, tenant
        for (_, ended), (started, _) in zip(runs, runs[1:], strict=False):
            assert ended <= started, f"{tenant}: a workflow was let in at {started}, before {ended}"
    assert LimitTable(database).usage("Import") == []  # nothing held, nothing waits


def _view(client, workflow_id: str) -> dict:
    return client.simulate_get(f"/workflows/{workflow_id}").json


def test_a_queued_workflow_says_what_it_waits_for_and_a_cancel_lets_the_next_in(flow, client):
    first = flow.start("Gated", {"tenant": "acme"})
    wait_for(lambda: _view(client, first)["activities"][0]["status"] == "Waiting", timeout_s=30)
    second = flow.start("Gated", {"tenant": "acme"})
    other = flow.start("Gated", {"tenant": "omni"})  # another key: not held back
    wait_for(lambda: _view(client, second)["queued"], timeout_s=30, what="the second to queue")
    view = _view(client, second)
    assert view["status"] == "In Progress"
    assert view["limit"] == {"name": "Gated", "key": "acme"}
    assert view["waiting_for"] == "waiting for Gated [acme]: 1 of 1 held"
    assert [a["status"] for a in view["activities"]] == ["Pending"]
    wait_for(lambda: _view(client, other)["activities"][0]["status"] == "Waiting", timeout_s=30)
    assert _view(client, first)["queued"] is False and _view(client, first)["waiting_for"] is None
    usage = client.simulate_get("/limits/Gated").json
    assert (usage["held"], usage["waiting"]) == (2, 1)

    assert client.simulate_post(f"/workflows/{first}/cancel").status_code == 202
    wait_for(lambda: _view(client, second)["activities"][0]["status"] == "Waiting", timeout_s=30)
    assert _view(client, second)["queued"] is False
    for workflow_id in (second, other):
        assert client.simulate_post(f"/workflows/{workflow_id}/signals/go", json={"payload": 1}).status_code == 202
        assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"


def test_deleting_the_holder_lets_the_next_in(flow, client):
    first = flow.start("Gated", {"tenant": "del"})
    wait_for(lambda: _view(client, first)["activities"][0]["status"] == "Waiting", timeout_s=30)
    second = flow.start("Gated", {"tenant": "del"})
    wait_for(lambda: _view(client, second)["queued"], timeout_s=30)
    client.simulate_post(f"/workflows/{first}/cancel")
    wait_for(lambda: _view(client, first)["status"] == "Cancelled", timeout_s=30)
    assert client.simulate_delete(f"/workflows/{first}").status_code == 204
    wait_for(lambda: _view(client, second)["activities"][0]["status"] == "Waiting", timeout_s=30)
    client.simulate_post(f"/workflows/{second}/signals/go", json={"payload": 1})
    assert flow.wait(second, timeout_s=30).state.status == "Finished"


def test_a_retry_from_failure_queues_again_behind_the_holder(flow, client):
    failed = flow.start("Gated", {"tenant": "retry"})
    wait_for(lambda: _view(client, failed)["activities"][0]["status"] == "Waiting", timeout_s=30)
    client.simulate_post(f"/workflows/{failed}/cancel")
    wait_for(lambda: _view(client, failed)["status"] == "Cancelled", timeout_s=30)
    holder = flow.start("Gated", {"tenant": "retry"})
    wait_for(lambda: _view(client, holder)["activities"][0]["status"] == "Waiting", timeout_s=30)
    assert client.simulate_post(f"/workflows/{failed}/retry").status_code == 202
    wait_for(lambda: _view(client, failed)["queued"], timeout_s=30, what="the retried run to queue")
    assert _view(client, failed)["status"] == "In Progress"
    client.simulate_post(f"/workflows/{holder}/signals/go", json={"payload": 1})
    assert flow.wait(holder, timeout_s=30).state.status == "Finished"
    wait_for(lambda: _view(client, failed)["activities"][0]["status"] == "Waiting", timeout_s=30)
    client.simulate_post(f"/workflows/{failed}/signals/go", json={"payload": 2})
    assert flow.wait(failed, timeout_s=30).state.status == "Finished"


def test_an_input_the_key_cannot_be_read_over_is_refused(client):
    answer = client.simulate_post("/workflows", json={"name": "Measured", "input_data": {"tenant": 5}})
    assert answer.status_code == 422, answer.text
    assert "concurrency.key" in answer.text
    assert (
        client.simulate_post("/workflows", json={"name": "Measured", "input_data": {"tenant": "ab"}}).status_code < 300
    )


def test_cancel_newest_cancels_what_arrives_while_its_key_is_full(flow, client):
    holder = flow.start("Newest", {"tenant": "acme"})
    wait_for(lambda: _view(client, holder)["activities"][0]["status"] == "Waiting", timeout_s=30)
    late = flow.start("Newest", {"tenant": "acme"})
    other = flow.start("Newest", {"tenant": "omni"})  # another key: let in
    ended = flow.wait(late, timeout_s=30).state
    assert ended.status == "Cancelled"
    assert ended.error == "cancelled: 1 workflow with key acme already runs (cancel_newest)"
    assert [a.status for a in ended.activities] == ["Cancelled"]
    wait_for(lambda: _view(client, other)["activities"][0]["status"] == "Waiting", timeout_s=30)
    assert _view(client, holder)["status"] == "In Progress"  # the holder runs on
    client.simulate_post(f"/workflows/{holder}/signals/go", json={"payload": 1})
    assert flow.wait(holder, timeout_s=30).state.status == "Finished"
    after = flow.start("Newest", {"tenant": "acme"})  # the key is free again: let in
    wait_for(lambda: _view(client, after)["activities"][0]["status"] == "Waiting", timeout_s=30)
    for workflow_id in (other, after):
        client.simulate_post(f"/workflows/{workflow_id}/signals/go", json={"payload": 1})
        assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"


def test_cancel_in_progress_cancels_the_oldest_running_and_lets_the_newcomer_in(flow, client):
    oldest = flow.start("Latest", {"tenant": "acme"})
    wait_for(lambda: _view(client, oldest)["activities"][0]["status"] == "Waiting", timeout_s=30)
    other = flow.start("Latest", {"tenant": "omni"})  # another key: untouched
    wait_for(lambda: _view(client, other)["activities"][0]["status"] == "Waiting", timeout_s=30)
    newer = flow.start("Latest", {"tenant": "acme"})
    ended = flow.wait(oldest, timeout_s=30).state
    assert ended.status == "Cancelled"
    assert ended.error == "cancelled: a newer workflow with key acme started (cancel_in_progress)"
    wait_for(lambda: _view(client, newer)["activities"][0]["status"] == "Waiting", timeout_s=30)
    assert _view(client, newer)["queued"] is False
    assert _view(client, other)["status"] == "In Progress"
    for workflow_id in (newer, other):
        client.simulate_post(f"/workflows/{workflow_id}/signals/go", json={"payload": 1})
        assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"


@pytest.mark.parametrize(
    ("strategy", "definition", "reason"),
    [
        ("cancel_newest", "Newest", "cancelled: 1 workflow with key {key} already runs (cancel_newest)"),
        ("cancel_in_progress", "Latest", "cancelled: a newer workflow with key {key} started (cancel_in_progress)"),
    ],
)
def test_each_cancel_strategy_with_3_keys_of_6_workflows_leaves_one_running_per_key(
    flow, client, strategy, definition, reason
):
    """6 workflows for each of 3 keys, limit 1, started together: never more than one
    runs per key (sampled every 10 ms), and each key ends with one running and 5
    cancelled with the strategy's reason — for cancel_in_progress, the newest survives."""
    keys = [f"{strategy}-{n}" for n in range(3)]
    database = flow.runtime.store.database

    def by_key() -> dict[str, list[tuple[str, str, str]]]:
        found: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
        for workflow_id, key, status, started in database.execute_sql(
            "SELECT id, limit_key, status, run_started_at FROM workflows WHERE definition_name = ? "
            "AND limit_key LIKE ?",
            (definition, f"{strategy}-%"),
        ).fetchall():
            found[key].append((workflow_id, status, str(started)))
        return found

    def settled() -> bool:
        found = by_key()
        return all(
            sorted(status for _, status, _ in found[key]) == ["Cancelled"] * 5 + ["In Progress"]
            and any(
                _view(client, w)["activities"][0]["status"] == "Waiting"
                for w, status, _ in found[key]
                if status == "In Progress"
            )
            for key in keys
        )

    with running(flow, definition) as sampled:
        for _ in range(6):
            for key in keys:
                flow.start(definition, {"tenant": key})
        wait_for(settled, timeout_s=60, what="one running and 5 cancelled per key")
    assert sampled.samples > 0
    assert dict(sampled.peak) == dict.fromkeys(keys, 1)
    for key, workflows in by_key().items():
        (survivor,) = [w for w in workflows if w[1] == "In Progress"]
        for workflow_id, status, _ in workflows:
            if status == "Cancelled":
                assert flow.wait(workflow_id, timeout_s=5).state.error == reason.format(key=key)
        if strategy == "cancel_in_progress":  # the last in line (by its start, then id) is let in last
            assert (survivor[2], survivor[0]) == max((w[2], w[0]) for w in workflows)
        client.simulate_post(f"/workflows/{survivor[0]}/signals/go", json={"payload": 1})
        assert flow.wait(survivor[0], timeout_s=30).state.status == "Finished"
