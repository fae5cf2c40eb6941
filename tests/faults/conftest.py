"""The fault suite's harness: a supervised cluster on real PostgreSQL and RabbitMQ, a
mixed batch of workflows, and a checker that reads the database afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from tests.services import (
    VENV_BIN,
    Processes,
    free_port,
    new_database,
    new_queue_prefix,
    wait_http,
)

FAST_RETRY = {"retry": {"max_attempts": 5, "initial_delay_ms": 50, "jitter": 0}}

#: The batch: sequential, independent, retrying and failing activities.
FAULT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "SlowSequence": {
        "name": "SlowSequence",
        "config": FAST_RETRY,
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.3}} for _ in range(3)],
    },
    "FanOut": {
        "name": "FanOut",
        "config": FAST_RETRY,
        "activities": [
            *({"name": "SleepActivity", "independent": True, "config": {"sleep_s": 0.2}} for _ in range(4)),
            {"name": "EchoActivity"},
        ],
    },
    "Retrying": {
        "name": "Retrying",
        "config": FAST_RETRY,
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}, {"name": "NoopActivity"}],
    },
    "Failing": {
        "name": "Failing",
        "config": FAST_RETRY,
        "activities": [{"name": "NoopActivity"}, {"name": "RefusingActivity"}, {"name": "NoopActivity"}],
    },
    "OptionalBroken": {
        "name": "OptionalBroken",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [
            {"name": "BrokenActivity", "required": False},
            {"name": "SleepActivity", "config": {"sleep_s": 0.1}},
        ],
    },
    "LongWait": {
        "name": "LongWait",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 6000, "jitter": 0}},
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}}],
    },
    "Poison": {
        "name": "Poison",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [{"name": "KillerActivity"}],
    },
}

EXPECTED = {
    "SlowSequence": "Finished",
    "FanOut": "Finished",
    "Retrying": "Finished",
    "Failing": "Failed",
    "OptionalBroken": "Finished",
    "Poison": "Failed",
    "LongWait": "Finished",
}

BATCH = ["SlowSequence", "FanOut", "Retrying", "Failing", "OptionalBroken"]


class FaultCluster:
    """API, engine(s) and workers as real processes, restarted when they die (like
    compose's ``restart: unless-stopped``), with counters of what happened."""

    def __init__(self, base: Path, pg_url: str, prefix: str) -> None:
        definitions = base / "workflows"
        definitions.mkdir()
        for name, body in FAULT_DEFINITIONS.items():
            (definitions / f"{name}.json").write_text(json.dumps(body))
        self.pg_url = pg_url
        self.prefix = prefix
        self.procs = Processes(
            base,
            {
                "FLOW_DATABASE_URL": pg_url,
                "FLOW_QUEUE_PREFIX": prefix,
                "FLOW_DEFINITIONS_DIR": str(definitions),
                "FLOW_ACTIVITY_PACKAGES": "tests.activities",
                "FLOW_OUTBOX_GRACE_S": "3",
                "FLOW_OUTBOX_POLL_S": "0.5",
                "FLOW_PARTITIONS": "16",
                "FLOW_PARTITION_LEASE_S": "3",
                "FLOW_LOG_LEVEL": "INFO",
            },
        )
        self.supervised: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.url = ""

    def start(self, *, engines: int = 1, workers: int = 2, engine_env: dict[str, str] | None = None) -> None:
        import subprocess

        migrate = subprocess.run(
            [str(VENV_BIN / "flow"), "migrate"], env={**self.procs.env, "PATH": str(VENV_BIN)}, capture_output=True
        )
        assert migrate.returncode == 0, migrate.stderr
        port = free_port()
        self.procs.gunicorn("api", port, workers=2)
        for i in range(engines):
            self.add(f"engine-{i}", f"{self.prefix}.engine", env=engine_env or {})
        for i in range(workers):
            self.add(f"worker-{i}", f"{self.prefix}.activities")
        self.url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.url}/health")
        self._supervisor.start()

    def add(self, name: str, *queues: str, env: dict[str, str] | None = None) -> None:
        self.supervised[name] = (queues, env or {})
        self.restarts.setdefault(name, 0)
        self.procs.dramatiq(name, *queues, threads=4, env=env)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for name, (queues, env) in list(self.supervised.items()):
                proc = self.procs.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    try:
                        self.restarts[name] += 1
                        self.procs.procs.pop(name)
                        # Keep the dead process's log next to the new one.
                        log = self.procs.log_dir / f"{name}.log"
                        log.rename(log.with_suffix(f".{self.restarts[name]}.log"))
                    finally:
                        # Whatever happened to the log, the process comes back (compose's
                        # restart policy does not care about logs either).
                        self.procs.dramatiq(name, *queues, threads=4, env=env)

    def start_batch(self, names: list[str], copies: int) -> dict[str, str]:
        started = {}
        for _ in range(copies):
            for name in names:
                response = requests.post(f"{self.url}/workflows", json={"name": name, "input_data": {}}, timeout=10)
                assert response.status_code == 201, response.text
                started[response.json()["id"]] = name
        return started

    def booted_children(self, prefix: str) -> list[int]:
        """The Dramatiq processes of ``prefix``-named processes that have said they are ready.

        Only a booted one may be killed: the Dramatiq master of a process killed while
        booting waits out its fork timeout instead of exiting at once.
        """
        from tests.services import child_pids

        booted = []
        for name, proc in list(self.procs.procs.items()):
            try:
                ready = name.startswith(prefix) and "Worker process is ready for action" in self.procs.log(name)
            except FileNotFoundError:  # the supervisor is restarting it right now
                continue
            if ready:
                booted += child_pids(proc.pid)
        return booted

    def unsupervise(self, name: str) -> None:
        """Stop restarting ``name`` (its death is the point of the test)."""
        self.supervised.pop(name, None)

    def engines(self) -> dict[str, tuple[int, int]]:
        """Live engines (heartbeat within the lease): ``id -> (partitions held, commits refused)``."""
        rows = _query(
            self.pg_url,
            "SELECT id, partitions_held, refused_commits FROM engines "
            "WHERE heartbeat_at > now() AT TIME ZONE 'utc' - interval '3 seconds'",
        )
        return {engine: (held, refused) for engine, held, refused in rows}

    def owners(self) -> dict[int, str | None]:
        """``partition -> owner`` of every partition whose lease has not expired."""
        rows = _query(
            self.pg_url,
            "SELECT partition, CASE WHEN expires_at > now() AT TIME ZONE 'utc' THEN owner END FROM partition_leases",
        )
        return dict(rows)

    def refused_commits(self) -> int:
        return _query(self.pg_url, "SELECT coalesce(sum(refused_commits), 0) FROM engines")[0][0]

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        self.procs.stop_all()


@pytest.fixture
def fault_cluster(services, tmp_path) -> Iterator[FaultCluster]:
    with new_database() as pg_url, new_queue_prefix() as prefix:
        cluster = FaultCluster(tmp_path, pg_url, prefix)
        try:
            yield cluster
        finally:
            cluster.stop()


def _query(pg_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def verify(cluster: FaultCluster, started: dict[str, str], *, timeout_s: float = 120) -> dict[str, int]:
    """Wait until the batch settles, then check every invariant against the database.

    Returns the figures for the report: workflows run, lost, stuck, duplicated.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        unsettled = _query(
            cluster.pg_url,
            """SELECT count(*) FROM workflows w WHERE w.status = 'In Progress'
               OR EXISTS (SELECT 1 FROM activities a WHERE a.workflow_id = w.id
                          AND a.status IN ('Scheduled', 'Started', 'Waiting Retry'))""",
        )[0][0]
        outbox = _query(cluster.pg_url, "SELECT count(*) FROM outbox")[0][0]
        if unsettled == 0 and outbox == 0:
            break
        if time.monotonic() > deadline:
            rows = _query(
                cluster.pg_url,
                "SELECT id, definition_name, status FROM workflows WHERE status = 'In Progress' LIMIT 10",
            )
            raise AssertionError(f"{unsettled} workflows unsettled, {outbox} outbox rows after {timeout_s} s: {rows}")
        time.sleep(0.5)

    stored = dict(_query(cluster.pg_url, "SELECT id, status FROM workflows"))
    lost = [w for w in started if w not in stored]
    wrong = {w: (started[w], stored[w]) for w in started if w in stored and stored[w] != EXPECTED[started[w]]}
    extra = [w for w in stored if w not in started]
    # Each attempt's result counts once; a duplicate or stale one is recorded as stale.
    twice_completed = _query(
        cluster.pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', count(*) FROM events
           WHERE type = 'activity-result' AND NOT coalesce((data::jsonb->>'stale')::boolean, false)
           GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    twice_scheduled = _query(
        cluster.pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', count(*) FROM events
           WHERE type = 'schedule-activity' GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    twice_ended = _query(
        cluster.pg_url,
        """SELECT workflow_id, count(*) FROM events WHERE type IN ('workflow-finished', 'workflow-failure')
           GROUP BY 1 HAVING count(*) > 1""",
    )
    assert not lost, f"lost workflows: {lost}"
    assert not wrong, f"workflows that ended wrongly: {wrong}"
    assert not extra, f"workflows nobody started: {extra}"
    assert not twice_completed, f"attempts completed twice: {twice_completed}"
    assert not twice_scheduled, f"attempts scheduled twice: {twice_scheduled}"
    assert not twice_ended, f"workflows ended twice: {twice_ended}"
    return {"workflows": len(started), "lost": 0, "stuck": 0, "duplicated": 0}
