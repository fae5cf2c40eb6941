"""``flow migrate`` upgrades a database made by the first release with its data intact:
the ended workflows read the same, the in-progress ones run to their end on today's
engine (tests/fixtures/first_release/README.md says how the database was made)."""

from __future__ import annotations

import json
import subprocess

import dramatiq
import pytest
import requests
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.testing import AMQP_URL, VENV_BIN, Processes, free_port, new_database, new_queue_prefix, wait_http
from tests.conftest import ROOT
from tests.integration.conftest import wait_ended

pytestmark = pytest.mark.services

FIXTURE = ROOT / "tests" / "fixtures" / "first_release"


def load(file: str):
    return json.loads((FIXTURE / file).read_text())


def test_a_first_release_database_upgrades_and_its_workflows_run_to_their_end(services, tmp_path):
    ids, views, held = load("ids.json"), load("views.json"), load("messages.json")
    with new_database() as pg_url, new_queue_prefix() as prefix:
        restore = subprocess.run(
            ["psql", pg_url, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(FIXTURE / "database.sql")],
            capture_output=True,
            text=True,
        )
        assert restore.returncode == 0, restore.stderr
        env = {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_DEFINITIONS_DIR": str(FIXTURE / "workflows"),
            "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities",
            "FLOW_PARTITIONS": "8",
        }
        procs = Processes(tmp_path, env)
        migrate = subprocess.run(
            [str(VENV_BIN / "flow"), "migrate"],
            env={**procs.env, "PATH": str(VENV_BIN)},
            capture_output=True,
            text=True,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "applied 0002_partitions" in migrate.stdout and "applied 0001_initial" not in migrate.stdout
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            procs.gunicorn("api", port)
            wait_http(f"{url}/health")

            # The ended workflows read as the first release showed them.
            for key in ("done", "fails", "cancelled"):
                assert_same(requests.get(f"{url}/workflows/{ids[key]}").json(), views[key]["workflow"])
                events = requests.get(f"{url}/workflows/{ids[key]}/events", params={"limit": 500}).json()["items"]
                assert [(e["type"], e["position"], e["data"]) for e in events] == [
                    (e["type"], e["position"], e["data"]) for e in views[key]["events"]
                ]

            # What RabbitMQ held for the first release goes back under this deployment's
            # queues; the retry timer's 400 s are taken as passed.
            broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
            for queue, bodies in held.items():
                for body in bodies:
                    message = dramatiq.Message.decode(body.encode())
                    target = queue.replace("legacy.", f"{prefix}.").removesuffix(".DQ")
                    delay = 1 if queue.endswith(".DQ") else None
                    broker.enqueue(message.copy(queue_name=target, options={}), delay=delay)
            broker.close()

            procs.dramatiq("engine", f"{prefix}.engine")
            procs.dramatiq("worker", f"{prefix}.activities")
            for key in ("retry", "scheduled", "unstarted"):
                body = wait_ended(url, ids[key], timeout_s=60)
                assert body["status"] == "Finished", (key, body)
            # The retried one kept its history and went on from where it was.
            retried = requests.get(f"{url}/workflows/{ids['retry']}").json()
            assert [a["attempt"] for a in retried["activities"]] == [2, 1]
            assert retried["activities"][1]["output"]["outputs"]["FlakyActivity"] == {"attempt": 2}
            # Nothing ended twice, nothing ran twice.
            for key in ids:
                events = requests.get(f"{url}/workflows/{ids[key]}/events", params={"limit": 500}).json()["items"]
                endings = [e for e in events if e["type"] in ("workflow-finished", "workflow-failure")]
                assert len(endings) <= 1, key
        finally:
            procs.stop_all()


def assert_same(now: dict, then: dict) -> None:
    """Every field the first release showed is shown the same today."""
    for field, value in then.items():
        if field == "activities":
            for a_now, a_then in zip(now["activities"], value, strict=True):
                assert {k: a_now[k] for k in a_then} == a_then
        else:
            assert now[field] == value, field


def test_flow_migrate_refuses_another_partition_count(services, tmp_path):
    with new_database() as pg_url:
        env = {"FLOW_DATABASE_URL": pg_url, "FLOW_PARTITIONS": "16", "PATH": str(VENV_BIN)}
        first = subprocess.run([str(VENV_BIN / "flow"), "migrate"], env=env, capture_output=True, text=True)
        assert first.returncode == 0 and "16 partitions" in first.stdout, first.stderr
        again = subprocess.run(
            [str(VENV_BIN / "flow"), "migrate"], env={**env, "FLOW_PARTITIONS": "32"}, capture_output=True, text=True
        )
        assert again.returncode == 2
        assert "FLOW_PARTITIONS=32, but this database was created with 16 partitions" in again.stderr.replace("\n", " ")
        unset = subprocess.run(
            [str(VENV_BIN / "flow"), "migrate"],
            env={k: v for k, v in env.items() if k != "FLOW_PARTITIONS"},
            capture_output=True,
            text=True,
        )
        assert unset.returncode == 0 and "16 partitions" in unset.stdout
