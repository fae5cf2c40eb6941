"""A supervised cluster on real PostgreSQL and RabbitMQ, and the checker of what a run
left behind.

:class:`Cluster` runs the API, engines and workers as real processes and restarts
whatever dies, like compose's ``restart: unless-stopped``; the fault suite kills its
processes, the soak run (``python -m bench.soak``) stops them over and over.
:func:`check_settled` waits until the run settles and then checks the invariants of
docs/design.md against the database: nothing lost, nothing run or ended twice,
nothing stuck, every workflow ended as expected.
"""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flow.core.vocabulary import UNENDED
from flow.errors import PollTimeout
from flow.loops import BackgroundLoop, poll_until
from flow.testing.processes import Processes, child_pids, free_port, migrate, wait_http
from flow.testing.services import new_database, new_queue_prefix, query

#: The statuses of a workflow that has not ended, as SQL: ('In Progress', 'Compensating').
_UNENDED = "(" + ", ".join(f"'{status}'" for status in UNENDED) + ")"

#: Short leases and outbox grace: a dead engine's partitions, and messages it owed,
#: are taken over within seconds instead of the production defaults' tens of seconds.
FAST_RECOVERY = {
    "FLOW_OUTBOX_GRACE_S": "3",
    "FLOW_OUTBOX_POLL_S": "0.5",
    "FLOW_PARTITIONS": "16",
    "FLOW_PARTITION_LEASE_S": "3",
}


class Cluster:
    """API, engine(s) and workers as real processes, restarted when they die."""

    def __init__(
        self,
        base: Path,
        pg_url: str,
        prefix: str,
        definitions: dict[str, dict[str, Any]],
        *,
        activity_packages: str = "activities",
        env: dict[str, str] | None = None,
    ) -> None:
        directory = base / "workflows"
        directory.mkdir()
        for name, body in definitions.items():
            (directory / f"{name}.json").write_text(json.dumps(body))
        self.pg_url = pg_url
        self.prefix = prefix
        self.procs = Processes(
            base,
            {
                "FLOW_DATABASE_URL": pg_url,
                "FLOW_QUEUE_PREFIX": prefix,
                "FLOW_DEFINITIONS_DIR": str(directory),
                "FLOW_ACTIVITY_PACKAGES": activity_packages,
                "FLOW_LOG_LEVEL": "INFO",
                **FAST_RECOVERY,
                **(env or {}),
            },
        )
        self.supervised: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}
        self._supervisor = BackgroundLoop("cluster-supervisor", self._supervise, every_s=0.2)
        self.url = ""

    def start(
        self,
        *,
        engines: int = 1,
        workers: int = 2,
        api_workers: int = 2,
        engine_env: dict[str, str] | None = None,
        api_env: dict[str, str] | None = None,
    ) -> None:
        """Migrate, then start the API (``api_workers`` gunicorn workers), ``engines`` engines and ``workers``
        workers (``engine_env``, ``api_env``: settings of their own, e.g. a URL through a fault proxy)."""
        migrate(self.procs.env)
        port = free_port()
        self.procs.gunicorn("api", port, workers=api_workers, env=api_env)
        for i in range(engines):
            self.add(f"engine-{i}", f"{self.prefix}.engine", env=engine_env or {})
        for i in range(workers):
            self.add(f"worker-{i}", f"{self.prefix}.activities")
        self.url = f"http://127.0.0.1:{port}"
        # A cluster's processes boot together beside other tests' on a busy machine: give
        # them time (only a cluster that never answers waits this long).
        wait_http(f"{self.url}/health", timeout_s=120)
        self._supervisor.start()

    def add(self, name: str, *queues: str, env: dict[str, str] | None = None) -> None:
        """Start a supervised ``dramatiq flow.actors`` process consuming ``queues``."""
        self.supervised[name] = (queues, env or {})
        self.restarts.setdefault(name, 0)
        self.procs.dramatiq(name, *queues, threads=4, env=env)

    def _supervise(self) -> None:
        """Restart every supervised process that exited (one turn of the supervisor's loop)."""
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

    def unsupervise(self, name: str) -> None:
        """Stop restarting ``name`` (its death is the point of the test)."""
        self.supervised.pop(name, None)

    def start_batch(self, names: list[str], copies: int) -> dict[str, str]:
        """Start ``copies`` workflows of each of ``names`` through the API; ``id -> name``."""
        started = {}
        for _ in range(copies):
            for name in names:
                request = urllib.request.Request(
                    f"{self.url}/workflows",
                    data=json.dumps({"name": name, "input_data": {}}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the cluster's own API
                    if response.status != 201:
                        raise AssertionError(f"POST /workflows answered {response.status}: {response.read()!r}")
                    started[json.load(response)["id"]] = name
        return started

    def booted_children(self, prefix: str) -> list[int]:
        """The Dramatiq processes of ``prefix``-named processes that have said they are ready.

        Only a booted one may be killed: the Dramatiq master of a process killed while
        booting waits out its fork timeout instead of exiting at once.
        """
        booted: list[int] = []
        for name, proc in list(self.procs.procs.items()):
            try:
                ready = name.startswith(prefix) and "Worker process is ready for action" in self.procs.log(name)
            except FileNotFoundError:  # the supervisor is restarting it right now
                continue
            if ready:
                booted += child_pids(proc.pid)
        return booted

    def engines(self) -> dict[str, tuple[int, int]]:
        """Live engines (heartbeat within the lease): ``id -> (partitions held, commits refused)``."""
        rows = query(
            self.pg_url,
            "SELECT id, partitions_held, refused_commits FROM engines "
            "WHERE heartbeat_at > now() AT TIME ZONE 'utc' - interval '3 seconds'",
        )
        return {engine: (held, refused) for engine, held, refused in rows}

    def owners(self) -> dict[int, str | None]:
        """``partition -> owner`` of every partition whose lease has not expired."""
        rows = query(
            self.pg_url,
            "SELECT partition, CASE WHEN expires_at > now() AT TIME ZONE 'utc' THEN owner END FROM partition_leases",
        )
        return dict(rows)

    def refused_commits(self) -> int:
        """Commits refused by fencing or version, summed over every engine that ever ran."""
        return query(self.pg_url, "SELECT coalesce(sum(refused_commits), 0) FROM engines")[0][0]

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        """Stop every process of the cluster (``sig`` first, SIGKILL after 15 s)."""
        self._supervisor.stop(5)
        self.procs.stop_all(sig=sig)


@contextlib.contextmanager
def fresh_cluster(
    base: Path, definitions: dict[str, dict[str, Any]], *, activity_packages: str = "flow.testing.activities"
) -> Iterator[Cluster]:
    """A :class:`Cluster` of ``definitions`` on a database and a queue prefix of its own
    (dropped and deleted afterwards), stopped at the end; start it with ``start()``."""
    with new_database() as pg_url, new_queue_prefix() as prefix:
        cluster = Cluster(base, pg_url, prefix, definitions, activity_packages=activity_packages)
        try:
            yield cluster
        finally:
            cluster.stop(sig=signal.SIGKILL)  # the test is over: no need to wait for graceful shutdowns


def check_settled(
    pg_url: str, started: dict[str, str], expected: dict[str, str], *, timeout_s: float = 120
) -> dict[str, int]:
    """Wait until the run settles, then check every invariant against the database.

    ``started`` maps each workflow id to its definition's name, ``expected`` each
    definition's name to the status its workflows must end in. Returns the figures
    for a report: workflows run, lost, stuck, duplicated (all but the first are 0,
    or this raised ``AssertionError`` saying what broke).
    """

    def settled() -> bool:
        unsettled = query(
            pg_url,
            f"""SELECT count(*) FROM workflows w WHERE w.status IN {_UNENDED}
               OR EXISTS (SELECT 1 FROM activities a WHERE a.workflow_id = w.id
                          AND a.status IN ('Queued', 'Scheduled', 'Started', 'Waiting Retry', 'Running', 'Waiting'))""",
        )[0][0]
        return unsettled == 0 and query(pg_url, "SELECT count(*) FROM outbox")[0][0] == 0

    try:
        poll_until(settled, timeout_s=timeout_s, every_s=0.5, what="the run to settle")
    except PollTimeout as e:
        rows = query(pg_url, f"SELECT id, definition_name, status FROM workflows WHERE status IN {_UNENDED} LIMIT 10")
        outbox = query(pg_url, "SELECT count(*) FROM outbox")[0][0]
        raise AssertionError(f"{e}: still in progress {rows}, {outbox} outbox rows") from e

    rows = query(pg_url, "SELECT id, status, definition_name, parent_id FROM workflows")
    stored = {w: status for w, status, _, _ in rows}
    # Children were started by their parents: each counts as started, once per parent's activity.
    children = {w: (name, parent) for w, _, name, parent in rows if parent is not None}
    started = {**started, **{w: name for w, (name, parent) in children.items() if parent in started}}
    lost = [w for w in started if w not in stored]
    wrong = {w: (started[w], stored[w]) for w in started if w in stored and stored[w] != expected[started[w]]}
    extra = [w for w in stored if w not in started]
    twice_children = query(
        pg_url,
        """SELECT parent_id, parent_position, count(*) FROM workflows WHERE parent_id IS NOT NULL
           GROUP BY 1, 2 HAVING count(*) > 1""",
    )
    # Each attempt's result counts once; a duplicate or stale one is recorded as stale.
    twice_completed = query(
        pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', count(*) FROM events
           WHERE type = 'activity-result' AND NOT coalesce((data::jsonb->>'stale')::boolean, false)
           GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    twice_scheduled = query(
        pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', count(*) FROM events
           WHERE type = 'schedule-activity' GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    twice_ended = query(
        pg_url,
        """SELECT workflow_id, count(*) FROM events WHERE type IN ('workflow-finished', 'workflow-failure')
           GROUP BY 1 HAVING count(*) > 1""",
    )
    # A map's items are listed once: a second start-map (no retry-from-failure here) or a
    # second row for one index would run items twice.
    twice_mapped = query(
        pg_url,
        """SELECT workflow_id, position, count(*) FROM events WHERE type = 'start-map'
           GROUP BY 1, 2 HAVING count(*) > 1""",
    )
    twice_listed = query(
        pg_url,
        """SELECT workflow_id, graph::jsonb->>'parent', graph::jsonb->>'index', count(*) FROM activities
           WHERE graph::jsonb ? 'parent' GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    woken_twice = query(
        pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', count(*) FROM events
           WHERE type = 'timer-fired' AND data::jsonb->>'kind' = 'sleep'
             AND NOT coalesce((data::jsonb->>'stale')::boolean, false)
           GROUP BY 1, 2, 3 HAVING count(*) > 1""",
    )
    # Every slot of every concurrency limit is back: no grant left, no step in flight.
    slots_held = query(
        pg_url,
        """SELECT 'grant', id FROM timers WHERE kind IN ('slot', 'limit-cancel')
           UNION ALL SELECT 'step', workflow_id || ':' || position FROM activities
           WHERE limit_name IS NOT NULL AND status IN ('Queued', 'Scheduled', 'Started')""",
    )
    problems = {
        "slots still held or waited for at the end": slots_held,
        "lost workflows": lost,
        "workflows that ended wrongly": wrong,
        "workflows nobody started": extra,
        "attempts completed twice": twice_completed,
        "attempts scheduled twice": twice_scheduled,
        "workflows ended twice": twice_ended,
        "maps started twice": twice_mapped,
        "map items listed twice": twice_listed,
        "sleeps woken twice": woken_twice,
        "children started twice": twice_children,
    }
    found = "; ".join(f"{what}: {rows}" for what, rows in problems.items() if rows)
    if found:
        raise AssertionError(found)
    return {"workflows": len(started), "lost": 0, "stuck": 0, "duplicated": 0}
