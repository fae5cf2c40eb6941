"""``flow up`` as a real process, and the remote commands against it, as subprocesses."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import requests

from flow.testing import flow_up
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for
from tests.embedded.conftest import run_cli as flow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, definitions_dir) -> Iterator[dict[str, str]]:
    with flow_up(tmp_path, embedded_env(tmp_path, definitions_dir)) as url:
        yield {"FLOW_API_URL": url, "COLUMNS": "200"}


def test_start_wait_shows_progress_and_exits_with_the_outcome(server):
    ok = flow("start", "DummyWorkflow", "--input", '{"x": 1}', "--wait", env=server)
    assert ok.returncode == 0, ok.stderr
    assert "workflow finished" in ok.stdout and "Finished" in ok.stdout
    failed = flow("start", "FailingWorkflow", "--wait", env=server)
    assert failed.returncode == 1
    assert "workflow failed" in failed.stdout


def test_start_status_list_events_as_json(server):
    started = json.loads(flow("start", "RetryWorkflow", "--json", env=server).stdout)
    workflow_id = started["id"]
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Finished")
    listed = json.loads(flow("list", "--json", "--name", "RetryWorkflow", env=server).stdout)
    assert [w["id"] for w in listed["items"]] == [workflow_id]
    history = json.loads(flow("events", workflow_id, "--json", env=server).stdout)
    assert [e["type"] for e in history].count("reschedule-activity") == 2
    human = flow("events", workflow_id, env=server)
    assert "will retry" in human.stdout


def test_idempotency_key_from_the_cli(server):
    first = json.loads(flow("start", "DummyWorkflow", "--idempotency-key", "k-1", "--json", env=server).stdout)
    second = json.loads(flow("start", "DummyWorkflow", "--idempotency-key", "k-1", "--json", env=server).stdout)
    assert first["id"] == second["id"]


def test_cancel_and_retry_from_the_cli(server, definitions_dir):
    slow = {
        "name": "SlowOne",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 30}}, {"name": "NoopActivity"}],
    }
    put = requests.put(f"{server['FLOW_API_URL']}/definitions/SlowOne", json=slow, timeout=5)
    assert put.status_code == 201
    workflow_id = json.loads(flow("start", "SlowOne", "--json", env=server).stdout)["id"]
    cancelled = flow("cancel", workflow_id, "--reason", "testing", env=server)
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Cancelled")
    assert flow("cancel", workflow_id, env=server).returncode == 5  # already ended: 409

    failed = json.loads(flow("start", "FailingWorkflow", "--json", env=server).stdout)["id"]
    wait_for(lambda: json.loads(flow("status", failed, "--json", env=server).stdout)["status"] == "Failed")
    assert flow("retry", failed, env=server).returncode == 0
    wait_for(lambda: json.loads(flow("status", failed, "--json", env=server).stdout)["status"] != "In Progress")
    events = json.loads(flow("events", failed, "--json", env=server).stdout)
    assert "retry-workflow" in [e["type"] for e in events]


def test_definitions_from_the_cli(server):
    listed = flow("definitions", env=server)
    assert listed.returncode == 0 and "DummyWorkflow" in listed.stdout
    shown = json.loads(flow("definitions", "DummyWorkflow", "--json", env=server).stdout)
    assert shown["version"] == 1


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("status", "no-such-id"), 5, "404"),
        (("start", "NoSuchWorkflow"), 2, "NoSuchWorkflow"),
        (("start", "DummyWorkflow", "--input", "[]"), 2, "JSON object"),
        (("retry", "no-such-id"), 5, "404"),
    ],
)
def test_remote_errors_have_clear_messages_and_exit_codes(server, args, code, text):
    result = flow(*args, env=server)
    assert result.returncode == code
    assert text in result.stderr


def test_an_unreachable_api_exits_4():
    result = flow("list", env={"FLOW_API_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.returncode == 4
    assert "cannot reach the API" in result.stderr
