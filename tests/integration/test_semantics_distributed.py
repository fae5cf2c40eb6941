"""Retries, timeouts, cancel, retry from failure, versions, payload limits and idempotent
start on real PostgreSQL and RabbitMQ, with the API, engine and workers as processes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from flow.testing import Processes, free_port, migrate, wait_http
from tests.conftest import wait_for
from tests.integration.conftest import wait_ended

pytestmark = pytest.mark.services

DEFINITIONS = {
    "Retrying": {
        "name": "Retrying",
        "config": {"retry": {"max_attempts": 3, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}],
    },
    "Unstarted": {
        "name": "Unstarted",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50}, "timeouts": {"schedule_to_start_s": 1}},
        "activities": [{"name": "NoopActivity"}],
    },
    "TooSlow": {
        "name": "TooSlow",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50}},
        "activities": [{"name": "SpinActivity", "config": {"spin_s": 30, "timeouts": {"start_to_close_s": 0.5}}}],
    },
    "Deadline": {
        "name": "Deadline",
        "config": {"timeouts": {"workflow_s": 1}},
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.4}} for _ in range(5)],
    },
    "Long": {
        "name": "Long",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 3}}, {"name": "NoopActivity"}],
    },
    "Graph": {
        "name": "Graph",
        "activities": [
            {"id": "check", "name": "EchoActivity"},
            {"id": "express", "name": "EchoActivity", "depends_on": ["check"], "when": "input.express"},
            {"id": "standard", "name": "NoopActivity", "depends_on": ["check"], "when": "!(input.express)"},
            {"id": "ship", "name": "EchoActivity", "depends_on": ["express", "standard"], "trigger": "all_done"},
        ],
    },
    "Map": {
        "name": "Map",
        "config": {"retry": {"max_attempts": 3, "initial_delay_ms": 20, "jitter": 0}},
        "activities": [
            {"id": "list", "name": "EchoActivity"},
            {
                "id": "each",
                "name": "FlakyActivity",
                "map": {"over": "outputs.list.input_data.items", "max_concurrency": 5},
                "config": {"succeed_on_attempt": 2},
            },
            {"id": "after", "name": "EchoActivity"},
        ],
    },
    "Approval": {
        "name": "Approval",
        "activities": [
            {"id": "early", "wait_for": "early"},
            {"id": "nap", "sleep_s": 0.2},
            {"id": "approval", "wait_for": "approved", "timeout_s": 120},
            {"id": "ship", "name": "EchoActivity"},
        ],
    },
    "Callback": {
        "name": "Callback",
        "activities": [
            {"id": "request", "name": "EchoActivity"},
            {"id": "approval", "wait_for": "approved", "timeout_s": 120},
            {"id": "ship", "name": "EchoActivity"},
        ],
    },
    "Redrive": {
        "name": "Redrive",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [{"name": "EchoActivity"}, {"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}],
    },
    # Sub-workflows: the child fails in its first run and succeeds in its second.
    "FlakyChild": {
        "name": "FlakyChild",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"name": "EchoActivity"}, {"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}}],
    },
    "WithChild": {
        "name": "WithChild",
        "activities": [
            {"id": "sub", "workflow": "FlakyChild", "input": "{order: input.order}"},
            {"id": "after", "name": "EchoActivity", "depends_on": ["sub"]},
        ],
    },
    # Beats for ever (in effect) until told to stop.
    "Endless": {
        "name": "Endless",
        "activities": [{"name": "BeatActivity", "config": {"steps": 10_000_000, "step_s": 0.01}}],
    },
    "SlowChild": {"name": "SlowChild", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 3}}]},
    "WithSlowChild": {"name": "WithSlowChild", "activities": [{"id": "sub", "workflow": "SlowChild"}]},
}


@pytest.fixture(scope="module")
def env(pg_url, queue_prefix, tmp_path_factory):
    base = tmp_path_factory.mktemp("semantics")
    definitions = base / "workflows"
    definitions.mkdir()
    for name, body in DEFINITIONS.items():
        (definitions / f"{name}.json").write_text(json.dumps(body))
    procs = Processes(
        base,
        {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": queue_prefix,
            "FLOW_DEFINITIONS_DIR": str(definitions),
            "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities",
            "FLOW_START_ROUTING_KEY": f"starter_{queue_prefix}",
        },
    )
    migrate(procs.env)
    port = free_port()
    procs.gunicorn("api", port, workers=4)
    procs.dramatiq("engine", f"{queue_prefix}.engine")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    yield {"url": url, "procs": procs, "prefix": queue_prefix, "pg": pg_url}
    procs.stop_all()


def start(url: str, name: str, **body) -> str:
    response = requests.post(f"{url}/workflows", json={"name": name, **body}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_with_no_worker_running_schedule_to_start_fails_the_attempts_visibly(env):
    # Runs first: no worker process exists yet.
    workflow_id = start(env["url"], "Unstarted")
    body = wait_ended(env["url"], workflow_id, timeout_s=30)
    assert body["status"] == "Failed"
    activity = body["activities"][0]
    assert activity["attempt"] == 2
    assert "schedule-to-start timeout" in activity["error"]


def test_start_the_workers_and_results_of_timed_out_attempts_are_stale(env):
    env["procs"].dramatiq("worker-1", f"{env['prefix']}.activities")
    env["procs"].dramatiq("worker-2", f"{env['prefix']}.activities")
    assert wait_ended(env["url"], start(env["url"], "Retrying"), timeout_s=60)["status"] == "Finished"
    # The two attempts that timed out before any worker ran are run now; their
    # results arrive for attempts that already ended, and change nothing.
    [unstarted] = requests.get(f"{env['url']}/workflows", params={"name": "Unstarted"}).json()["items"]

    def stale_results() -> list[dict]:
        events = requests.get(f"{env['url']}/workflows/{unstarted['id']}/events", params={"limit": 500}).json()
        return [e for e in events["items"] if e["type"] == "activity-result" and e["data"].get("stale")]

    wait_for(lambda: len(stale_results()) == 2, timeout_s=30, what="two stale results")
    body = requests.get(f"{env['url']}/workflows/{unstarted['id']}").json()
    assert body["status"] == "Failed"
    assert body["activities"][0]["status"] == "Failed"


def test_retries_timeouts_and_deadlines(env):
    url = env["url"]
    retrying, too_slow, deadline = (start(url, n) for n in ("Retrying", "TooSlow", "Deadline"))
    body = wait_ended(url, retrying)
    assert (body["status"], body["activities"][0]["attempt"]) == ("Finished", 3)
    body = wait_ended(url, too_slow)
    assert body["status"] == "Failed"
    assert body["activities"][0]["attempt"] == 2
    assert "start-to-close timeout" in body["activities"][0]["error"]
    body = wait_ended(url, deadline)
    assert body["status"] == "Failed" and "timed out" in body["error"]


def test_cancel_and_retry_from_failure(env):
    url = env["url"]
    long = start(url, "Long")
    wait_for(lambda: requests.get(f"{url}/workflows/{long}").json()["activities"][0]["status"] == "Started")
    assert requests.post(f"{url}/workflows/{long}/cancel", json={"reason": "test"}).status_code == 202
    body = wait_ended(url, long)
    assert body["status"] == "Cancelled"
    assert body["activities"][1]["status"] == "Cancelled"

    redrive = start(url, "Redrive")
    assert wait_ended(url, redrive)["status"] == "Failed"
    assert requests.post(f"{url}/workflows/{redrive}/retry").status_code == 202
    body = wait_for(lambda: (b := requests.get(f"{url}/workflows/{redrive}").json())["status"] == "Finished" and b)
    assert [a["attempt"] for a in body["activities"]] == [1, 3]


def test_a_new_version_applies_to_new_workflows_only(env):
    url = env["url"]
    old = start(url, "Long")
    changed = {**DEFINITIONS["Long"], "activities": [{"name": "NoopActivity"}]}
    assert requests.put(f"{url}/definitions/Long", json=changed).status_code == 201
    new = start(url, "Long")
    old_body, new_body = wait_ended(url, old), wait_ended(url, new)
    assert (old_body["definition_version"], len(old_body["activities"])) == (1, 2)
    assert (new_body["definition_version"], len(new_body["activities"])) == (2, 1)


def test_fifty_concurrent_starts_with_one_key_create_one_workflow(env):
    url = env["url"]

    def post(_: int) -> tuple[int, str]:
        # A 429 (more starts at once than FLOW_MAX_STARTS_IN_FLIGHT) is asked again after its
        # Retry-After, as a client would: it must end in the same one workflow.
        deadline = time.monotonic() + 120
        while True:
            r = requests.post(
                f"{url}/workflows", json={"name": "Retrying"}, headers={"Idempotency-Key": "fifty-at-once"}, timeout=30
            )
            if r.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(float(r.headers["Retry-After"]))
        assert r.status_code in (200, 201), r.text
        return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(post, range(50)))
    assert {code for code, _ in results} <= {200, 201}
    assert [code for code, _ in results].count(201) == 1
    assert len({workflow_id for _, workflow_id in results}) == 1
    conn = psycopg2.connect(env["pg"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM workflows WHERE idempotency_key = 'fifty-at-once'")
        assert cur.fetchone()[0] == 1
    conn.close()


def test_an_oversize_input_is_refused(env):
    response = requests.post(f"{env['url']}/workflows", json={"name": "Retrying", "input_data": {"x": "y" * 300_000}})
    assert response.status_code == 422
    assert "FLOW_MAX_PAYLOAD_BYTES" in response.json()["description"]


def test_a_graph_with_a_condition_and_a_join(env):
    url = env["url"]
    body = wait_ended(url, start(url, "Graph", input_data={"express": True}))
    assert body["status"] == "Finished"
    view = {a["id"]: a for a in body["activities"]}
    assert {i: a["status"] for i, a in view.items()} == {
        "check": "Succeeded",
        "express": "Succeeded",
        "standard": "Skipped",
        "ship": "Succeeded",
    }
    assert view["standard"]["skip_reason"] == "when '!(input.express)' was false"
    assert view["ship"]["depends_on"] == ["express", "standard"]
    assert view["ship"]["trigger"] == "all_done"
    assert set(view["ship"]["output"]["outputs"]) == {"check", "express"}
    events = requests.get(f"{url}/workflows/{body['id']}/events", params={"limit": 500}).json()["items"]
    skips = [e["data"]["reason"] for e in events if e["type"] == "skip-activity"]
    assert skips == ["when '!(input.express)' was false"]


def test_a_map_with_retried_items_on_postgres(env):
    url = env["url"]
    items = [{"n": i} for i in range(40)]
    body = wait_ended(url, start(url, "Map", input_data={"items": items}))
    assert body["status"] == "Finished", body["error"]
    view = {a["id"]: a for a in body["activities"]}
    each = view["each"]
    assert each["items"] == {"Succeeded": 40} and each["map"] == {
        "over": "outputs.list.input_data.items",
        "max_concurrency": 5,
    }
    assert len(each["output"]) == 40
    item_views = [view[f"each[{i}]"] for i in range(40)]
    assert [(a["parent"], a["index"], a["item"], a["attempt"]) for a in item_views] == [
        ("each", i, {"n": i}, 2) for i in range(40)
    ]
    assert set(view["after"]["output"]["outputs"]) == {"list", "each"}
    events, after = [], None
    while True:
        params = {"limit": 500, **({"after": after} if after else {})}
        page = requests.get(f"{url}/workflows/{body['id']}/events", params=params).json()
        events.extend(page["items"])
        if not (after := page["next"]):
            break
    assert [e["type"] for e in events if e["type"] in ("start-map", "end-map")] == ["start-map", "end-map"]
    # At most max_concurrency items were owed a result at any time: replay the history.
    flying: set[int] = set()
    for e in events:
        if e["type"] == "schedule-activity" and e["position"] >= 3:
            flying.add(e["position"])
            assert len(flying) <= 5
        elif e["type"] == "activity-result" and e["data"]["outcome"] == "SUCCEEDED":
            flying.discard(e["position"])


def test_signals_over_http_and_dramatiq_and_a_sleep_on_postgres(env):
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from flow.testing import AMQP_URL

    url = env["url"]
    workflow_id = start(url, "Approval")
    # "approved" arrives first, before its wait: kept in the inbox (stored on PostgreSQL).
    sent = requests.post(
        f"{url}/workflows/{workflow_id}/signals/approved",
        json={"payload": {"by": "ana"}},
        headers={"Idempotency-Key": "once"},
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    # "early" from another process, as a plain Dramatiq message to the shared engine queue.
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
    queue = f"{env['prefix']}.engine"
    broker.declare_queue(queue)
    broker.enqueue(
        dramatiq.Message(
            queue_name=queue,
            actor_name="flow.signal_workflow",
            args=(),
            kwargs={"workflow_id": workflow_id, "name": "early", "payload": 1},
            options={},
        )
    )
    broker.close()
    body = wait_ended(url, workflow_id)
    assert body["status"] == "Finished", body
    view = {a["id"]: a for a in body["activities"]}
    assert (view["early"]["output"], view["approval"]["output"]) == (1, {"by": "ana"})
    assert view["nap"]["status"] == "Succeeded" and view["nap"]["name"] == "sleep"
    events = requests.get(f"{url}/workflows/{workflow_id}/events", params={"limit": 500}).json()["items"]
    kinds = [e["type"] for e in events]
    assert kinds.count("end-wait") == 2 and "keep-signal" in kinds and "start-sleep" in kinds
    again = requests.post(f"{url}/workflows/{workflow_id}/signals/approved", timeout=10)
    assert again.status_code == 409


def test_a_callback_token_made_by_the_engine_is_read_by_the_api_and_delivers_once(env):
    """The engine and the API are separate processes: both read the secret that ``flow
    migrate`` stored in PostgreSQL, so the token an activity is handed is the API's."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from flow.testing import AMQP_URL

    url = env["url"]
    tokens = []
    for _ in range(2):
        workflow_id = start(url, "Callback")

        def approval(workflow_id: str = workflow_id) -> dict:
            return requests.get(f"{url}/workflows/{workflow_id}", timeout=10).json()["activities"]

        activities = wait_for(lambda: approval()[1]["status"] == "Waiting" and approval(), what="the wait")
        handed = activities[0]["output"]["outputs"]["approval"]["callback_token"]
        assert handed == activities[1]["callback_token"]
        tokens.append((workflow_id, handed))
    (by_http, token), (by_dramatiq, other) = tokens
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda n: requests.post(f"{url}/signals/{token}", json={"payload": n}, timeout=10), range(4))
        )
    assert {a.status_code for a in answers} <= {202, 410} and any(a.status_code == 202 for a in answers)
    body = wait_ended(url, by_http)
    assert body["status"] == "Finished" and body["activities"][1]["output"] in range(4)
    events = requests.get(f"{url}/workflows/{by_http}/events", params={"limit": 500}).json()["items"]
    assert [e["type"] for e in events].count("end-wait") == 1
    assert requests.post(f"{url}/signals/{token}", json={"payload": "again"}, timeout=10).status_code == 410
    # By a plain Dramatiq message on the shared engine queue.
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
    queue = f"{env['prefix']}.engine"
    broker.declare_queue(queue)
    message = dramatiq.Message(
        queue_name=queue, actor_name="flow.signal_workflow", args=(), kwargs={"token": other, "payload": 7}, options={}
    )
    broker.enqueue(message)
    broker.close()
    body = wait_ended(url, by_dramatiq)
    assert body["status"] == "Finished" and body["activities"][1]["output"] == 7


def test_a_child_workflow_fails_is_retried_with_its_parent_and_is_cancelled_with_it(env):
    url = env["url"]
    parent = start(url, "WithChild", input_data={"order": 7, "other": 1})
    body = wait_ended(url, parent, timeout_s=60)
    assert body["status"] == "Failed"
    sub = body["activities"][0]
    assert sub["status"] == "Failed" and "child workflow FlakyChild" in sub["error"]
    [child] = requests.get(f"{url}/workflows", params={"parent_id": parent}).json()["items"]
    assert child["id"] == sub["child_id"] and child["parent_id"] == parent
    assert requests.post(f"{url}/workflows/{child['id']}/retry").status_code == 409

    assert requests.post(f"{url}/workflows/{parent}/retry").status_code == 202
    body = wait_for(lambda: (b := requests.get(f"{url}/workflows/{parent}").json())["status"] == "Finished" and b)
    sub, after = body["activities"]
    child = requests.get(f"{url}/workflows/{child['id']}").json()
    assert child["status"] == "Finished" and child["input_data"] == {"order": 7}
    assert sub["attempt"] == 2 and sub["output"] == child["output"]
    assert after["output"]["outputs"]["sub"] == child["output"]
    assert len(requests.get(f"{url}/workflows", params={"parent_id": parent}).json()["items"]) == 1

    long = start(url, "WithSlowChild")

    def child_running() -> str | None:
        [child] = requests.get(f"{url}/workflows", params={"parent_id": long}).json()["items"] or [None]
        started = child and requests.get(f"{url}/workflows/{child['id']}").json()["activities"][0]["status"]
        return child["id"] if started == "Started" else None

    child_id = wait_for(child_running, timeout_s=30, what="the child's activity running")
    assert requests.post(f"{url}/workflows/{long}/cancel").status_code == 202
    assert wait_ended(url, long)["status"] == "Cancelled"
    child = wait_ended(url, child_id)
    assert child["status"] == "Cancelled" and f"its parent {long} was cancelled" in child["error"]


def test_pause_and_resume_on_postgres(env):
    url = env["url"]
    workflow_id = start(url, "Approval")
    assert requests.post(f"{url}/workflows/{workflow_id}/pause", timeout=10).status_code == 202

    def view() -> dict:
        return requests.get(f"{url}/workflows/{workflow_id}", timeout=10).json()

    wait_for(lambda: view()["paused"], what="the pause to be stored")
    for name in ("early", "approved"):
        sent = requests.post(f"{url}/workflows/{workflow_id}/signals/{name}", timeout=10)
        assert sent.status_code == 202
    wait_for(lambda: view()["activities"][0]["status"] == "Succeeded", what="the first wait to take its signal")
    assert view()["activities"][1]["status"] == "Pending"  # the sleep after it is not started while paused
    assert requests.post(f"{url}/workflows/{workflow_id}/resume", timeout=10).status_code == 202
    body = wait_ended(url, workflow_id)
    assert body["status"] == "Finished" and body["paused"] is False


def test_cancel_reaches_a_running_activity_through_the_workers_fanout(env):
    if "worker-1" not in env["procs"].procs:  # run on its own
        env["procs"].dramatiq("worker-1", f"{env['prefix']}.activities")
    workflow_id = start(env["url"], "Endless")

    def beating():
        body = requests.get(f"{env['url']}/workflows/{workflow_id}", timeout=5).json()
        return body["activities"][0]["heartbeat"]

    first = wait_for(beating, timeout_s=60, what="a heartbeat")
    assert first["details"]["done"] >= 1
    response = requests.post(f"{env['url']}/workflows/{workflow_id}/cancel", json={"reason": "enough"}, timeout=10)
    assert response.status_code == 202
    # The worker stops the attempt at its next heartbeat; its result says Cancelled.
    wait_for(
        lambda: (
            requests.get(f"{env['url']}/workflows/{workflow_id}", timeout=5).json()["activities"][0]["status"]
            == "Cancelled"
        ),
        timeout_s=60,
        what="the running activity cancelled",
    )
    events = requests.get(f"{env['url']}/workflows/{workflow_id}/events", timeout=5).json()
    outcomes = [e["data"]["outcome"] for e in events["items"] if e["type"] == "activity-result"]
    assert outcomes == ["CANCELLED"]
