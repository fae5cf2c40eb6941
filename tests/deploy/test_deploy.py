"""The deployments the README promises: the Procfile under honcho for real, the compose
file validated, and the exact commands its containers run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg2
import pytest
import requests
import yaml

from flow.testing import VENV_BIN, die_with_parent, free_port, new_database, new_queue_prefix
from flow.testing.definitions import sample_definitions
from tests.conftest import ROOT, wait_for

COMPOSE = ROOT / "docker-compose.yml"


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        message = "docker-compose is not installed (./project_tests.sh installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_the_compose_file_is_valid():
    result = subprocess.run([_docker_compose(), "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_services_wait_for_healthy_dependencies_and_share_the_settings():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "rabbitmq", "migrate", "api", "engine", "worker", "worker-gpu"} <= set(services)
    for name in ("postgres", "rabbitmq", "api"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["engine"]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    for name in ("migrate", "api", "engine", "worker", "worker-gpu"):
        env = services[name]["environment"]
        assert env["FLOW_DATABASE_URL"].startswith("postgres://")
        assert env["FLOW_BROKER_URL"].startswith("amqp://")
    for name in ("api", "engine", "worker", "worker-gpu", "postgres", "rabbitmq"):
        assert services[name]["restart"] == "unless-stopped", name
    assert {"pgdata", "rabbitmq"} <= set(compose["volumes"])
    # The worker must be scalable: no fixed container name or host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]


def test_the_dockerfile_installs_from_setup_py_and_runs_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install" in dockerfile and "setup.py" in dockerfile
    assert "\nUSER flow" in dockerfile
    assert "[test]" not in dockerfile  # no test or dev tools in the image


def test_the_containers_commands_exist_and_load():
    """Each compose ``command`` runs here as in its container (``--help`` where it would serve)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    for name in ("migrate", "api", "engine", "worker", "worker-gpu"):
        command = compose["services"][name]["command"]
        assert shutil.which(command[0], path=str(VENV_BIN)), f"{name}: {command[0]} is not installed"
    gunicorn_app = compose["services"]["api"]["command"][-1]
    check = subprocess.run(
        [str(VENV_BIN / "python"), "-c", f"import api.app as m; app = eval('m.' + {gunicorn_app.split(':')[1]!r})"],
        cwd=ROOT,
        env={**os.environ, "FLOW_DATABASE_URL": "sqlite:///:memory:", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.fixture
def honcho_env(services, tmp_path, http_server):
    definitions = tmp_path / "workflows"
    definitions.mkdir()
    bodies = sample_definitions(http_server)
    bodies["Sleepy"] = {
        "name": "Sleepy",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 2}}, {"name": "NoopActivity"}],
    }
    for name, body in bodies.items():
        (definitions / f"{name}.json").write_text(json.dumps(body))
    with new_database() as pg_url, new_queue_prefix() as prefix:
        yield {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "PORT": str(free_port()),
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_DEFINITIONS_DIR": str(definitions),
            "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities",
            "FLOW_START_ROUTING_KEY": f"starter_{prefix}",
            "FLOW_LOG_FORMAT": "json",
        }


def honcho_start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(VENV_BIN / "honcho"), "start", "web", "engine", "worker"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - the process owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # honcho stops its processes when it gets SIGTERM
    )


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Stop honcho as an operator would; every process must shut down by itself."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    text = log.read_text()
    assert "sending SIGKILL" not in text, text[-3000:]  # honcho lost patience: not graceful
    assert "Killing worker process" not in text, text[-3000:]  # a worker abandoned its messages


def test_the_procfile_under_honcho_runs_a_workflow_and_stops_cleanly(honcho_env, tmp_path):
    release = subprocess.run(
        [str(VENV_BIN / "honcho"), "run", "flow", "migrate"], cwd=ROOT, env=honcho_env, capture_output=True, text=True
    )
    assert release.returncode == 0, release.stderr
    log = tmp_path / "honcho.log"
    proc = honcho_start(honcho_env, log)
    url = f"http://127.0.0.1:{honcho_env['PORT']}"
    try:
        wait_for(lambda: _healthy(url), timeout_s=60, what="the Procfile's web process")
        workflow = requests.post(f"{url}/workflows", json={"name": "DummyWorkflow"}, timeout=10).json()
        done = wait_for(lambda: _ended(url, workflow["id"]), timeout_s=60)
        assert done["status"] == "Finished"
    finally:
        stop(proc, log)
    assert log.read_text().count("Worker has been shut down") >= 2  # engine and worker
    # One logging set-up for all processes: JSON lines, with workflow ids where they apply.
    lines = [line.split("|", 1)[-1].strip() for line in log.read_text().splitlines()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r.get("workflow_id") == workflow["id"] for r in records)


def test_sigterm_under_honcho_loses_no_activity_in_flight(honcho_env, tmp_path):
    subprocess.run([str(VENV_BIN / "honcho"), "run", "flow", "migrate"], cwd=ROOT, env=honcho_env, check=True)
    log = tmp_path / "honcho.log"
    url = f"http://127.0.0.1:{honcho_env['PORT']}"
    proc = honcho_start(honcho_env, log)
    try:
        wait_for(lambda: _healthy(url), timeout_s=60)
        workflow_id = requests.post(f"{url}/workflows", json={"name": "Sleepy"}, timeout=10).json()["id"]
        wait_for(lambda: _activity(honcho_env, workflow_id, 0) == ("Started", 1), timeout_s=30)
    finally:
        # honcho sends SIGTERM to every process group, and Dramatiq's master forwards it again.
        stop(proc, log)

    proc = honcho_start(honcho_env, log)
    try:
        wait_for(lambda: _healthy(url), timeout_s=60)
        done = wait_for(lambda: _ended(url, workflow_id), timeout_s=60)
    finally:
        stop(proc, log)
    assert done["status"] == "Finished"
    # The sleep finished during the shutdown and was not run again.
    assert done["activities"][0]["attempt"] == 1
    assert "delivered again" not in log.read_text()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _ended(url: str, workflow_id: str) -> dict | None:
    body = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
    return body if body["status"] != "In Progress" else None


def _activity(env: dict[str, str], workflow_id: str, position: int) -> tuple[str, int] | None:
    conn = psycopg2.connect(env["FLOW_DATABASE_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, attempt FROM activities WHERE workflow_id = %s AND position = %s",
                (workflow_id, position),
            )
            return cur.fetchone()
    finally:
        conn.close()
        time.sleep(0.1)
