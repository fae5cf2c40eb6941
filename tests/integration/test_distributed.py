"""The distributed deployment for real: gunicorn, an engine and two workers as separate
OS processes, on the machine's PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import EXPECTED_STATUS, ROOT, sample_definitions, wait_for
from tests.services import VENV_BIN, Processes, child_pids, free_port, queue_depth, wait_http

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    """API + engine + 2 workers, migrated with ``flow migrate``."""
    base = tmp_path_factory.mktemp("cluster")
    definitions = base / "workflows"
    definitions.mkdir()
    for name, body in sample_definitions(http_server).items():
        (definitions / f"{name}.json").write_text(json.dumps(body))
    env = {
        "FLOW_DATABASE_URL": pg_url,
        "FLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "FLOW_QUEUE_PREFIX": queue_prefix,
        "FLOW_DEFINITIONS_DIR": str(definitions),
        "FLOW_ACTIVITY_PACKAGES": "tests.activities",
    }
    procs = Processes(base, env)
    migrate = subprocess.run(
        [str(VENV_BIN / "flow"), "migrate"], env={**procs.env, "PATH": str(VENV_BIN)}, cwd=ROOT, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    procs.start(
        "api",
        str(VENV_BIN / "gunicorn"),
        "--no-control-socket",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "api.app:create_app()",
    )
    procs.dramatiq("engine", f"{queue_prefix}.engine")
    # Workers need no database: give them one that does not exist to prove it.
    no_database = {"FLOW_DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}
    procs.dramatiq("worker-1", f"{queue_prefix}.activities", env=no_database)
    procs.dramatiq("worker-2", f"{queue_prefix}.activities", env=no_database)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    yield {"url": url, "procs": procs, "env": env, "prefix": queue_prefix}
    procs.stop_all()


def wait_ended(url: str, workflow_id: str, timeout_s: float = 60) -> dict:
    def ended():
        body = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        return body if body["status"] != "In Progress" else None

    return wait_for(ended, timeout_s=timeout_s, every_s=0.2, what=f"workflow {workflow_id}")


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
    time.sleep(0.5)
    assert "NoSuchWorkflow" in cluster["procs"].log("engine")
