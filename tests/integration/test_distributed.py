"""The distributed deployment for real: gunicorn, an engine and two workers as separate
OS processes, on the machine's PostgreSQL and RabbitMQ."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from flow.testing import VENV_BIN, child_pids, queue_depth
from flow.testing.definitions import EXPECTED_STATUS
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import wait_ended

pytestmark = pytest.mark.services


def test_many_workflows_at_once_all_reach_their_expected_end(cluster):
    url = cluster["url"]
    started = {}
    for _ in range(3):
        for name in sorted(EXPECTED_STATUS):
            response = requests.post(f"{url}/workflows", json={"name": name, "input_data": {"n": len(started)}})
            assert response.status_code == 201, response.text
            assert response.headers["Location"] == f"/workflows/{response.json()['id']}"
            started[response.json()["id"]] = name
    for workflow_id, name in started.items():
        body = wait_ended(url, workflow_id)
        assert body["status"] == EXPECTED_STATUS[name], body
        assert not [a for a in body["activities"] if a["status"] in ("Scheduled", "Started", "Waiting Retry")]
        events = requests.get(f"{url}/workflows/{workflow_id}/events", params={"limit": 500}).json()["items"]
        assert events[0]["type"] == "start-workflow"
        assert events[-1]["type"] in ("workflow-finished", "workflow-failure")


def test_activities_run_in_the_worker_processes_not_the_engine(cluster):
    url, procs = cluster["url"], cluster["procs"]
    ids = [requests.post(f"{url}/workflows", json={"name": "ParallelWorkflow"}).json()["id"] for _ in range(8)]
    pids = {wait_ended(url, i)["activities"][3]["output"]["pid"] for i in ids}
    workers = child_pids(procs.procs["worker-1"].pid) | child_pids(procs.procs["worker-2"].pid)
    engine = child_pids(procs.procs["engine"].pid)
    assert pids <= workers
    assert not pids & engine


def test_a_dramatiq_message_from_another_process_starts_a_workflow(cluster, pg_url):
    before = {w["id"] for w in requests.get(f"{cluster['url']}/workflows", params={"limit": 500}).json()["items"]}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "start_with_dramatiq.py"), "DummyWorkflow", '{"via": "dramatiq"}'],
        env={"FLOW_QUEUE_PREFIX": cluster["prefix"], "PATH": str(VENV_BIN)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr

    def new_workflow():
        items = requests.get(f"{cluster['url']}/workflows", params={"limit": 500}).json()["items"]
        return [w for w in items if w["id"] not in before]

    [created] = wait_for(new_workflow, timeout_s=30, what="the workflow started by the Dramatiq message")
    body = wait_ended(cluster["url"], created["id"])
    assert body["status"] == "Finished"
    assert body["input_data"] == {"via": "dramatiq"}


def test_bad_requests_against_gunicorn_change_nothing(cluster):
    url = cluster["url"]
    count = len(requests.get(f"{url}/workflows", params={"limit": 500}).json()["items"])
    assert (
        requests.post(f"{url}/workflows", data=b"{nope", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert requests.post(f"{url}/workflows", json={"name": "NoSuchWorkflow"}).status_code == 422

    def chunked():
        yield b'{"name": "DummyWorkflow", "input_data": {"blob": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = requests.post(f"{url}/workflows", data=chunked(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert len(requests.get(f"{url}/workflows", params={"limit": 500}).json()["items"]) == count


def test_an_unknown_workflow_in_a_start_message_is_dead_lettered(cluster):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "start_with_dramatiq.py"), "NoSuchWorkflow"],
        env={"FLOW_QUEUE_PREFIX": cluster["prefix"], "PATH": str(VENV_BIN)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    wait_for(lambda: queue_depth(f"{cluster['prefix']}.engine.XQ") >= 1, timeout_s=30, what="a dead letter")
    wait_for(lambda: "NoSuchWorkflow" in cluster["procs"].log("engine"), timeout_s=10, what="the engine's log line")


def test_gunicorn_serves_the_web_page(cluster):
    page = requests.get(f"{cluster['url']}/", timeout=5)
    assert page.status_code == 200 and "<title>Libero Flow</title>" in page.text  # redirected to /ui/
    assert requests.get(f"{cluster['url']}/ui/app.js", timeout=5).status_code == 200


def test_engine_and_worker_metrics_are_exported_when_asked(pg_url, queue_prefix, cluster, tmp_path):
    """With FLOW_METRICS_PORT, a ``dramatiq flow.actors`` process serves Prometheus metrics."""
    from flow.testing import free_port

    port = free_port()
    procs = cluster["procs"]
    env = {"FLOW_METRICS_PORT": str(port), "dramatiq_prom_db": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    # One process runs engine and activities (no --queues), so it sees every metric.
    for name in ("engine", "worker-1", "worker-2"):
        procs.stop(name)
    procs.dramatiq("engine-with-metrics", env=env)
    try:
        body = wait_ended(
            cluster["url"], requests.post(f"{cluster['url']}/workflows", json={"name": "RetryWorkflow"}).json()["id"]
        )
        assert body["status"] == "Finished"

        def scraped() -> str | None:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                return None
            return text if "flow_decision_seconds_count" in text and "flow_activity_attempts_total" in text else None

        text = wait_for(scraped, timeout_s=30, what="the metrics exporter")
        assert 'outcome="TEMPORARY_FAILURE"' in text and 'outcome="SUCCEEDED"' in text
        assert "flow_activity_duration_seconds_bucket" in text
        assert "dramatiq_messages_total" in text
    finally:
        procs.stop("engine-with-metrics")
        no_database = {"FLOW_DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}
        procs.dramatiq("engine", f"{cluster['prefix']}.engine")
        procs.dramatiq("worker-1", f"{cluster['prefix']}.activities", env=no_database)
        procs.dramatiq("worker-2", f"{cluster['prefix']}.activities", env=no_database)
