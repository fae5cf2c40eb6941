"""Module-wide PostgreSQL database and queue prefix for the integration tests."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import requests

from flow.persistence.database import open_database
from flow.persistence.models import bind
from flow.persistence.store import Store
from flow.settings import Settings
from flow.testing import Processes, free_port, migrate, new_database, new_queue_prefix, queue_consumers, wait_http
from flow.testing.definitions import sample_definitions
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def pg_url(services) -> Iterator[str]:
    with new_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def migrated(request, tmp_path) -> Iterator[peewee.Database]:
    """A new database of each kind, migrated (4 partitions) and bound to the models: SQLite
    in ``tmp_path``, and PostgreSQL (with the services)."""

    def opened(url: str) -> Iterator[peewee.Database]:
        db = open_database(url)
        bind(db)
        Store(db).migrate(partitions=4)
        yield db
        db.close()

    if request.param == "sqlite":
        yield from opened(f"sqlite:///{tmp_path / 'flow.db'}")
    else:
        request.getfixturevalue("services")
        with new_database() as url:
            yield from opened(url)


@pytest.fixture(scope="module")
def queue_prefix(services) -> Iterator[str]:
    with new_queue_prefix() as prefix:
        yield prefix


def cluster_env(pg_url: str, queue_prefix: str, definitions: Path, *, partitions: int = 16) -> dict[str, str]:
    """The ``FLOW_`` variables of a test cluster's processes. Its start queue is bound
    under a routing key of its own: under the default one, every cluster running at the
    same time (other test files on other xdist workers) would get a copy of each start
    message."""
    return {
        "FLOW_DATABASE_URL": pg_url,
        "FLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "FLOW_QUEUE_PREFIX": queue_prefix,
        "FLOW_DEFINITIONS_DIR": str(definitions),
        "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities",
        "FLOW_PARTITIONS": str(partitions),
        "FLOW_START_ROUTING_KEY": f"starter_{queue_prefix}",
    }


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    """API + engine + 2 workers, migrated with ``flow migrate``."""
    yield from start_cluster(tmp_path_factory.mktemp("cluster"), pg_url, queue_prefix, http_server)


def start_cluster(
    base, pg_url: str, queue_prefix: str, http_server: str, *, bodies: dict | None = None, **extra_env: str
):
    """API + engine + 2 workers on ``base`` with the sample definitions (or ``bodies``, by
    name; and ``extra_env``); yields what the tests need, stops every process afterwards."""
    definitions = base / "workflows"
    definitions.mkdir()
    for name, body in (bodies or sample_definitions(http_server)).items():
        (definitions / f"{name}.json").write_text(json.dumps(body))
    env = {**cluster_env(pg_url, queue_prefix, definitions), **extra_env}
    procs = Processes(base, env)
    migrate(procs.env)
    port = free_port()
    procs.gunicorn("api", port, workers=2)
    procs.dramatiq("engine", f"{queue_prefix}.engine")
    # Workers need no database: give them one that does not exist to prove it.
    no_database = {"FLOW_DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}
    procs.dramatiq("worker-1", f"{queue_prefix}.activities", env=no_database)
    procs.dramatiq("worker-2", f"{queue_prefix}.activities", env=no_database)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    # The engine consumes the plain-JSON start queue only once it has started: a message
    # published to the exchange before its queue is bound is dropped by RabbitMQ.
    start_queue = Settings.from_env(env).start_queue
    wait_for(lambda: queue_consumers(start_queue) > 0, timeout_s=120, what=f"a consumer of {start_queue}")
    yield {"url": url, "procs": procs, "env": env, "prefix": queue_prefix}
    procs.stop_all(sig=signal.SIGKILL)  # the tests are over: no need to wait for graceful shutdowns


def wait_ended(url: str, workflow_id: str, timeout_s: float = 60) -> dict:
    def ended():
        body = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        return body if body["status"] not in ("In Progress", "Compensating") else None

    return wait_for(ended, timeout_s=timeout_s, every_s=0.2, what=f"workflow {workflow_id}")
