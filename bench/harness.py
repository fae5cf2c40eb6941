"""The benchmark's harness: process layouts, drivers, and CPU accounting.

Every system runs with the same layout on the same machine: one "engine" process
(8 threads) and two worker processes (8 threads each). Drivers run closed batches:
``inflight`` items started together, all waited for, then the next batch; they poll
PostgreSQL on one connection every few milliseconds, so their own cost is small and
the same for every system. CPU time is read from ``/proc`` for each group of
processes (the engine, the workers, RabbitMQ, PostgreSQL, this driver) over each
measured run, and reported per step.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import requests

from bench.pgstats import PgCounters, PgSnapshot
from bench.proc import cpu_s as _cpu_s
from bench.proc import percentile
from flow.clock import utcnow
from flow.core.partitions import partition_of
from flow.core.state import ActivityStatus, WorkflowStatus
from flow.loops import poll_until
from flow.persistence.models import ActivityRecord, EngineRecord, WorkflowRecord
from flow.process.runtime import Runtime
from flow.settings import Settings
from flow.testing import VENV_BIN, Processes, free_port, migrate, wait_http

STEPS = 10
THREADS = 8


pct = percentile  # the name the cases use


def median(values: list[float]) -> float:
    return statistics.median(values)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out = [pid]
    for child in kids.get(pid, []):
        out += _tree(child, kids)
    return out


def _named(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


class Bench:
    def __init__(self, pg_url: str, prefix: str, base: Path, quick: bool) -> None:
        self.pg_url, self.prefix, self.base, self.quick = pg_url, prefix, base, quick
        definitions = base / "workflows"
        definitions.mkdir(exist_ok=True)
        bodies = [
            {"name": "Seq10", "config": {"retry": {"max_attempts": 1}}, "activities": [{"name": "NoopActivity"}] * 10},
            {
                "name": "Seq1000",
                "config": {"retry": {"max_attempts": 1}},
                "activities": [{"name": "NoopActivity"}] * 1000,
            },
            {"name": "Fan100", "activities": [{"name": "NoopActivity", "independent": True}] * 100},
            {"name": "Fan1000", "activities": [{"name": "NoopActivity", "independent": True}] * 1000},
            {"name": "Map", "activities": [{"name": "NoopActivity", "map": {"over": "input.items"}}]},
            {"name": "Wait", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 3600}}]},
            {"name": "Approval", "activities": [{"id": "approval", "wait_for": "approved"}, {"name": "NoopActivity"}]},
            {"name": "Nap", "activities": [{"id": "nap", "sleep_s": 3600}, {"name": "NoopActivity"}]},
            # The limits case's (bench/limits.py): every step limited (never full), and a
            # step limited to 2 at once per tenant.
            {
                "name": "Seq10Limited",
                "config": {"retry": {"max_attempts": 1}},
                "activities": [{"name": "NoopActivity", "concurrency": {"key": "input.tenant", "limit": 64}}] * 10,
            },
            {
                "name": "Tenant",
                "activities": [
                    {
                        "name": "SleepActivity",
                        "config": {"sleep_s": 0.01},
                        "concurrency": {"key": "input.tenant", "limit": 2},
                    }
                ],
            },
        ]
        for body in bodies:
            (definitions / f"{body['name']}.json").write_text(json.dumps(body))
        self.env = {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_DEFINITIONS_DIR": str(definitions),
            "FLOW_START_ROUTING_KEY": f"starter_{prefix}",
            "FLOW_LOG_LEVEL": "WARNING",
            "BENCH_PG": pg_url,
            "BENCH_PREFIX": prefix,
        }
        self.procs = Processes(base, self.env)
        migrate(self.env)
        self.conn = psycopg2.connect(pg_url)
        self.conn.autocommit = True
        self.pg = PgCounters(self.conn)
        #: The open-loop case's start rates per second and seconds at each (None: its defaults).
        self.open_loop_rates: list[float] | None = None
        self.open_loop_s: float | None = None
        self.sql(
            "CREATE TABLE IF NOT EXISTS floor_chains (id text PRIMARY KEY, started double precision, "
            "finished double precision, step int)"
        )
        # Libero Flow's tables are read through its models on the runtime's database; the
        # floor's and Celery's chains are a table of the benchmark's own, read by SQL.
        self.runtime = Runtime.build(Settings.from_env({**os.environ, **self.env}), engine=False)
        self.service = self.runtime.service

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        self.stop_all()
        self.runtime.service.close()
        self.runtime.broker.close()
        self.conn.close()

    # -- process layouts: 1 engine process, 2 worker processes, 8 threads each -------------

    def start_flow(self, engines: int = 1) -> None:
        for i in range(engines):
            self.procs.dramatiq(f"engine-{i}", f"{self.prefix}.engine", threads=THREADS)
        self.procs.dramatiq("worker-1", f"{self.prefix}.activities", threads=THREADS)
        self.procs.dramatiq("worker-2", f"{self.prefix}.activities", threads=THREADS)
        self.wait(lambda: self._partitions_held() == self.service.partitions, timeout_s=120)
        self.workflows("Seq10", 2, 2)  # warm-up: every process connected and ready

    def _partitions_held(self) -> int:
        return self.service.partitions - self.runtime.store.status_counts()["unowned_partitions"]

    def live_engines(self) -> list[EngineRecord]:
        """Engines that heartbeated within the last 10 s (a few lease periods)."""
        recent = EngineRecord.heartbeat_at > utcnow() - timedelta(seconds=10)
        return list(EngineRecord.select().where(recent))

    def forget_engines(self) -> None:
        EngineRecord.delete().execute()

    @staticmethod
    def ended(ids: list[str]) -> int:
        return (
            WorkflowRecord.select()
            .where(WorkflowRecord.id.in_(ids), WorkflowRecord.status != WorkflowStatus.IN_PROGRESS)
            .count()
        )

    @staticmethod
    def activities_of(definition_name: str, statuses: tuple[ActivityStatus, ...]) -> int:
        return (
            ActivityRecord.select()
            .join(WorkflowRecord, on=ActivityRecord.workflow_id == WorkflowRecord.id)
            .where(WorkflowRecord.definition_name == definition_name, ActivityRecord.status.in_(statuses))
            .count()
        )

    def start_floor(self, bare: bool) -> None:
        env = {"BENCH_FLOOR_BARE": "1" if bare else "0"}
        dramatiq = str(VENV_BIN / "dramatiq")
        common = ["--processes", "1", "--threads", str(THREADS), "--queues"]
        self.procs.start("engine-0", dramatiq, "bench.floor", *common, f"{self.prefix}.floor_engine", env=env)
        for i in (1, 2):
            self.procs.start(f"worker-{i}", dramatiq, "bench.floor", *common, f"{self.prefix}.floor_worker", env=env)
        self.chains(lambda c: self.send_floor("floor_step", c, 1, STEPS), 2, 2)  # warm-up

    def send_floor(self, actor: str, *args: Any) -> None:
        """Send to the floor's Dramatiq actors by queue and name, as any process could
        (importing ``bench.floor`` here would bind it to this process's settings)."""
        import dramatiq

        queue = f"{self.prefix}.{'floor_engine' if actor == 'floor_step' else 'floor_worker'}"
        self.runtime.broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name=f"bench.{actor}", args=args, kwargs={}, options={})
        )

    def start_celery(self) -> None:
        for i in (1, 2):
            self.procs.start(
                f"worker-{i}",
                str(VENV_BIN / "celery"),
                "-A",
                "bench.celery_app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(THREADS),
                "--loglevel",
                "WARNING",
                "-n",
                f"bench{i}@%h",
            )
        self.chains(self.send_celery_chain, 2, 2)  # warm-up

    def send_celery_chain(self, chain_id: str) -> None:
        """A Celery chain of 10 no-op tasks, the last recording when it finished."""
        from celery import chain

        from bench import celery_app

        chain(*[celery_app.noop.si(chain_id) for _ in range(STEPS - 1)], celery_app.done.si(chain_id)).apply_async(
            queue=f"{self.prefix}.celery"
        )

    def stop_all(self) -> None:
        self.procs.stop_all()

    def start_api(self, workers: int = 4) -> str:
        """gunicorn on a free port; its URL once it answers."""
        port = free_port()
        self.procs.gunicorn("api", port, workers=workers)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health")
        return url

    # -- CPU accounting -----------------------------------------------------------------

    def cpu_groups(self) -> dict[str, list[int]]:
        procs = self.procs.procs
        return {
            "engine": [p.pid for name, p in procs.items() if name.startswith("engine")],
            "workers": [p.pid for name, p in procs.items() if name.startswith("worker")],
            "rabbitmq": _named("beam.smp"),
            "postgres": _named("postgres"),
            "driver": [os.getpid()],
        }

    def cpu_snapshot(self) -> dict[str, float]:
        kids = _children()
        return {
            group: sum(_cpu_s(p) for pid in pids for p in _tree(pid, kids)) for group, pids in self.cpu_groups().items()
        }

    # -- drivers ----------------------------------------------------------------------------

    def chains(self, send: Callable[[str], Any], inflight: int, total: int, steps: int = STEPS) -> dict[str, Any]:
        """Run ``total`` raw chains ``inflight`` at a time through ``send(chain_id)``."""
        ids: list[str] = []
        pg_before, cpu_before = self.pg.snapshot(), self.cpu_snapshot()
        t0 = time.time()
        for start in range(0, total, inflight):
            batch = [uuid.uuid4().hex for _ in range(min(inflight, total - start))]
            for chain_id in batch:
                self.sql("INSERT INTO floor_chains (id, started) VALUES (%s, %s)", (chain_id, time.time()))
                send(chain_id)
            self.wait(
                lambda b=batch: (
                    self.sql("SELECT count(*) FROM floor_chains WHERE id = ANY(%s) AND finished IS NOT NULL", (b,))[0][
                        0
                    ]
                    == len(b)
                )
            )
            ids += batch
        wall = time.time() - t0
        latencies = [r[0] for r in self.sql("SELECT finished - started FROM floor_chains WHERE id = ANY(%s)", (ids,))]
        return self._figures(latencies, total, steps, wall, cpu_before, pg_before)

    def workflows(
        self, name: str, inflight: int, total: int, steps: int = STEPS, input_data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run ``total`` workflows of ``name`` ``inflight`` at a time; each must finish."""
        ids: list[str] = []
        pg_before, cpu_before = self.pg.snapshot(), self.cpu_snapshot()
        t0 = time.time()
        for start in range(0, total, inflight):
            batch = [self.service.start(name, input_data or {})[0].id for _ in range(min(inflight, total - start))]
            self.wait(lambda b=batch: self.ended(b) == len(b))
            ids += batch
        wall = time.time() - t0
        rows = list(WorkflowRecord.select().where(WorkflowRecord.id.in_(ids)))
        assert all(r.status == WorkflowStatus.FINISHED for r in rows), "a benchmark workflow did not finish"
        latencies = [(r.finished_at - r.created_at).total_seconds() for r in rows]
        return self._figures(latencies, total, steps, wall, cpu_before, pg_before)

    def _figures(
        self,
        latencies: list[float],
        total: int,
        steps: int,
        wall: float,
        cpu_before: dict[str, float],
        pg_before: PgSnapshot,
    ) -> dict[str, Any]:
        """Latency, throughput, CPU per step of each group of processes, and PostgreSQL's
        work per step (``bench/pgstats.py``): the engine's CPU and the database's work
        per committed step are the figures that carry over between machines."""
        cpu_after = self.cpu_snapshot()
        pg = self.pg.per(pg_before, self.pg.settled(), total * steps)
        return {
            "engine_cpu_us_per_step": round((cpu_after["engine"] - cpu_before["engine"]) * 1e6 / (total * steps), 1),
            **pg,
            "per_step_ms_p50": pct(latencies, 0.5) / steps * 1000,
            "per_step_ms_p99": pct(latencies, 0.99) / steps * 1000,
            "per_second": total / wall,
            "steps_per_second": total * steps / wall,
            "wall_s": wall,
            "cpu_ms_per_step": {
                group: round((cpu_after[group] - cpu_before[group]) * 1000 / (total * steps), 3) for group in cpu_after
            },
        }

    @staticmethod
    def wait(condition: Callable[[], Any], timeout_s: float = 600, every_s: float = 0.003) -> None:
        poll_until(condition, timeout_s=timeout_s, every_s=every_s, what="the benchmark step to finish")


def load(
    url: str, path: Any, seconds: float | None = None, *, until: Callable[[], bool] | None = None, clients: int = 8
) -> dict[str, float]:
    """``clients`` threads GET ``url + path()`` for ``seconds`` (or until ``until()``);
    requests/s and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.time() + seconds if seconds is not None else None

    def going() -> bool:
        return time.time() < deadline if deadline is not None else not (until and until())

    def hammer() -> None:
        session = requests.Session()
        while going():
            t = time.perf_counter()
            answer = session.get(url + path(), timeout=10)
            assert answer.status_code == 200, (answer.status_code, answer.url, answer.text[:200])
            with lock:
                latencies.append(time.perf_counter() - t)

    t0 = time.time()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(hammer) for _ in range(clients)]:
            future.result()
    return {
        "rps": len(latencies) / (time.time() - t0),
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "requests": len(latencies),
    }


def workflow_key(number: int) -> str:
    """The id of the ``number``-th seeded workflow."""
    return hashlib.md5(str(number).encode()).hexdigest()


def random_workflow(count: int) -> Callable[[], str]:
    """A path to GET: one of the first ``count`` seeded workflows, at random."""
    return lambda: f"/workflows/{workflow_key(random.randint(1, count))}"


def seed_ended_workflows(b: Bench, rows: int, *, first: int = 1, finished_at: datetime | None = None) -> None:
    """``rows`` ended Seq10 workflows numbered from ``first`` (one in three failed),
    created a second apart before now, ended at ``finished_at`` (default: now), each with
    its first activity: made by the starting side's own code once, then copied in bulk."""
    template_id = b.service.start("Seq10", {})[0].id
    workflow = WorkflowRecord.get_by_id(template_id).__data__
    activity = ActivityRecord.get(ActivityRecord.workflow == template_id, ActivityRecord.position == 0).__data__
    activity.pop("id")
    WorkflowRecord.delete_by_id(template_id)
    now = workflow["created_at"]
    last = first + rows
    for start in range(first, last, 5000):
        numbers = range(start, min(start + 5000, last))
        ids = [workflow_key(i) for i in numbers]
        WorkflowRecord.insert_many(
            {
                **workflow,
                "id": workflow_id,
                "partition": partition_of(workflow_id, b.service.partitions),
                "status": WorkflowStatus.FAILED if i % 3 == 0 else WorkflowStatus.FINISHED,
                "started": True,
                "created_at": now - timedelta(seconds=i),
                "finished_at": finished_at or now,
                "version": 1,
            }
            for i, workflow_id in zip(numbers, ids, strict=True)
        ).execute()
        ActivityRecord.insert_many(
            {**activity, "workflow": workflow_id, "status": ActivityStatus.SUCCEEDED, "attempt": 1}
            for workflow_id in ids
        ).execute()
