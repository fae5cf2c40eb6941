"""The Python client against a real ``flow up`` (API, engine and workers in one process
on SQLite), as another team's service uses it; and the README's example, run as a user
runs it. What it sends and when it retries is tests/unit/test_client.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from flow.client import (
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    ResultTimeout,
    WorkflowCancelled,
    WorkflowFailed,
)
from flow.testing import flow_up
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from tests.conftest import ROOT, wait_for

#: Long enough for a busy 2-core machine; a workflow here takes well under a second.
RESULT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, http_server) -> Iterator[str]:
    base = tmp_path_factory.mktemp("client")
    definitions = {
        **sample_definitions(http_server),
        "WaitOnly": {"name": "WaitOnly", "activities": [{"id": "approval", "wait_for": "approved"}]},
        "TwoWaits": {
            "name": "TwoWaits",
            "activities": [{"id": "approval", "wait_for": "approved"}, {"id": "shipping", "wait_for": "shipped"}],
        },
        "ApprovalExample": json.loads((ROOT / "examples" / "workflows" / "approval.json").read_text()),
        "Tagged": {
            "name": "Tagged",
            "attributes": {"customer": "string", "amount": "number", "vip": "boolean", "due": "time"},
            "activities": [{"name": "EchoActivity"}],
        },
        "OnPaid": {
            "name": "OnPaid",
            "triggers": [{"event": "client.paid", "when": "data.total > `100`", "input": "{order: data.order}"}],
            "activities": [{"id": "echo", "name": "EchoActivity"}],
        },
    }
    directory = write_definitions(base / "workflows", definitions)
    with flow_up(base, embedded_env(base, directory)) as url:
        yield url


@pytest.fixture
def client(api_url) -> Client:
    return Client(api_url, token="")


def test_start_then_result_returns_the_output_and_a_reused_key_returns_the_first_workflow(client):
    key = f"order-{uuid.uuid4()}"
    workflow = client.start("DummyWorkflow", {"x": 1}, idempotency_key=key, priority=2)
    assert (workflow.name, workflow.priority, workflow.idempotency_key) == ("DummyWorkflow", 2, key)
    output = client.result(workflow.id, timeout_s=RESULT_TIMEOUT_S)
    assert output["DoSomethingActivity"] is not None and set(output) == {s.id for s in client.get(workflow.id).steps}
    again = client.start("DummyWorkflow", {"x": 1}, idempotency_key=key, priority=2)
    assert again.id == workflow.id and again.status == "Finished"
    with pytest.raises(Conflict) as raised:
        client.start("DummyWorkflow", {"x": 2}, idempotency_key=key)
    assert raised.value.status == 409 and raised.value.title == "Idempotency key reused"


def test_result_raises_the_workflow_s_error_and_retry_runs_it_again(client):
    workflow = client.start("FailingWorkflow")
    with pytest.raises(WorkflowFailed) as raised:
        client.result(workflow.id, timeout_s=RESULT_TIMEOUT_S)
    failed = raised.value
    assert failed.workflow_id == workflow.id and failed.error and "RefusingActivity" in failed.error
    assert [s.status for s in failed.workflow.steps] == ["Succeeded", "Failed", "Skipped"]
    client.retry(workflow.id)  # returns once the engine took it: result() waits for the new run
    with pytest.raises(WorkflowFailed):  # RefusingActivity refuses every time
        client.result(workflow.id, timeout_s=RESULT_TIMEOUT_S)
    assert [e["type"] for e in client.history(workflow.id)].count("workflow-failure") == 2


def test_rerun_from_a_step_runs_it_again_and_result_waits_for_the_new_run(client):
    workflow = client.start("ParallelWorkflow")
    first = client.result(workflow.id, timeout_s=RESULT_TIMEOUT_S)
    last = client.get(workflow.id).steps[-1].id
    client.rerun(workflow.id, last, input={"again": True}, by="test")
    assert client.result(workflow.id, timeout_s=RESULT_TIMEOUT_S)[last]["input_data"] == {"again": True}
    assert first[last]["input_data"] == {}
    assert [e["type"] for e in client.history(workflow.id)].count("rerun-workflow") == 1


def test_a_signal_ends_a_wait_and_a_cancel_ends_a_workflow(client):
    waiting = client.start("TwoWaits")
    with pytest.raises(ResultTimeout) as raised:
        client.result(waiting.id, timeout_s=0.2)
    assert raised.value.workflow.status == "In Progress"
    sent = client.signal(waiting.id, "approved", {"by": "ana"}, idempotency_key="once")
    # Sent again with its key (as after a lost reply): the same signal, delivered once.
    # The second wait keeps the workflow running, so the API takes the resend.
    assert client.signal(waiting.id, "approved", {"by": "ana"}, idempotency_key="once") == sent
    client.signal(waiting.id, "shipped", "by truck")
    output = client.result(waiting.id, timeout_s=RESULT_TIMEOUT_S)
    assert output == {"approval": {"by": "ana"}, "shipping": "by truck"}

    cancelled = client.start("WaitOnly")
    client.cancel(cancelled.id, reason="order withdrawn")
    with pytest.raises(WorkflowCancelled) as stopped:
        client.result(cancelled.id, timeout_s=RESULT_TIMEOUT_S)
    assert stopped.value.workflow.status == "Cancelled"
    with pytest.raises(Conflict):
        client.cancel(cancelled.id)


def test_list_follows_the_pages_newest_first(client):
    batch = str(uuid.uuid4())
    started = [client.start("WaitOnly", {"batch": batch}).id for _ in range(5)]
    listed = list(client.list(name="WaitOnly", input={"batch": batch}, page_size=2))
    assert [w.id for w in listed] == started[::-1]
    assert {w.status for w in listed} == {"In Progress"}
    for workflow_id in started:
        client.cancel(workflow_id)


def test_search_attributes_go_with_the_start_and_find_it_in_the_list(client):
    batch = str(uuid.uuid4())
    due = datetime(2026, 12, 24, tzinfo=UTC)
    big = client.start(
        "Tagged", {"b": batch}, attributes={"customer": "acme", "amount": 120.5, "vip": True, "due": due}
    )
    client.start("Tagged", {"b": batch}, attributes={"customer": "acme", "amount": 80})
    assert dict(big.attributes) == {"customer": "acme", "amount": 120.5, "vip": True, "due": "2026-12-24T00:00:00Z"}
    found = client.list(input={"b": batch}, attributes={"customer": "acme", "amount.gt": 100, "vip": True})
    assert [w.id for w in found] == [big.id]
    with pytest.raises(InvalidRequest) as raised:
        client.start("Tagged", attributes={"colour": "red"})
    assert [p["path"] for p in raised.value.problems] == ["$.attributes.colour"]


def test_an_event_starts_its_trigger_s_workflow_once(client):
    event_id = f"paid-{uuid.uuid4()}"
    sent = client.send_event("client.paid", {"order": 7, "total": 150}, id=event_id)
    assert (sent.id, sent.duplicate) == (event_id, False)
    assert client.send_event("client.paid", {"order": 7, "total": 150}, id=event_id).duplicate

    def started() -> list[str]:
        matched = client.request("GET", f"/events/{event_id}")["matched"]
        return [m["workflow_id"] for m in matched if m["state"] == "started"]  # "owed": not stored yet

    (workflow_id,) = wait_for(started, timeout_s=RESULT_TIMEOUT_S, what="the event's workflow")
    assert client.result(workflow_id, timeout_s=RESULT_TIMEOUT_S)["echo"]["input_data"] == {"order": 7}


def test_an_unknown_workflow_is_not_found(client):
    with pytest.raises(NotFound) as raised:
        client.get(str(uuid.uuid4()))
    assert raised.value.status == 404 and raised.value.title == "Workflow not found"


def test_the_readme_example_runs(api_url):
    order = str(uuid.uuid4())[:8]
    ran = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_client.py"), order],
        env={**os.environ, "FLOW_API_URL": api_url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"order {order}: approved, shipped: True\n"
