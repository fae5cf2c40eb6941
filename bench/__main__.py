"""``python -m bench``: Libero Flow against raw Dramatiq and Celery, on the local RabbitMQ
and PostgreSQL, in one run. Prints a table; writes it, the raw figures and a plot to
``bench/results/``. ``--quick`` shrinks every case (a few minutes in all)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services import (  # noqa: E402 - the test harness's process helpers
    VENV_BIN,
    Processes,
    child_pids,
    free_port,
    new_database,
    new_queue_prefix,
    require_services,
    wait_http,
)

RESULTS = ROOT / "bench" / "results"
STEPS = 10
THREADS = 8


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(rounds: list[float]) -> float:
    return statistics.median(rounds)


class Bench:
    def __init__(self, pg_url: str, prefix: str, base: Path, quick: bool) -> None:
        self.pg_url, self.prefix, self.base, self.quick = pg_url, prefix, base, quick
        definitions = base / "workflows"
        definitions.mkdir(exist_ok=True)
        seq = {
            "name": "Seq10",
            "config": {"retry": {"max_attempts": 1}},
            "activities": [{"name": "NoopActivity"}] * STEPS,
        }
        fan = {"name": "Fan100", "activities": [{"name": "NoopActivity", "independent": True}] * 100}
        one = {"name": "One", "activities": [{"name": "NoopActivity"}]}
        wait = {"name": "Wait", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 3600}}]}
        for body in (seq, fan, one, wait):
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
        os.environ.update(self.env)
        self.procs = Processes(base, self.env)
        subprocess.run(
            [str(VENV_BIN / "flow"), "migrate"], env={**os.environ, **self.env}, check=True, capture_output=True
        )
        self.sql(
            "CREATE TABLE IF NOT EXISTS floor_chains (id text PRIMARY KEY, started double precision, "
            "finished double precision, step int)"
        )
        from flow.runtime import Runtime
        from flow.settings import Settings

        self.runtime = Runtime.build(Settings.from_env())

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        conn = psycopg2.connect(self.pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows

    # -- process layouts: 1 engine process, 2 worker processes, 8 threads each -------------

    def start_flow(self) -> None:
        self.procs.dramatiq("engine", f"{self.prefix}.engine", threads=THREADS)
        self.procs.dramatiq("worker-1", f"{self.prefix}.activities", threads=THREADS)
        self.procs.dramatiq("worker-2", f"{self.prefix}.activities", threads=THREADS)
        time.sleep(3)

    def start_floor(self, bare: bool) -> None:
        env = {"BENCH_FLOOR_BARE": "1" if bare else "0"}
        dramatiq = str(VENV_BIN / "dramatiq")
        common = ["--processes", "1", "--threads", str(THREADS), "--queues"]
        self.procs.start("floor-engine", dramatiq, "bench.floor", *common, f"{self.prefix}.floor_engine", env=env)
        for i in (1, 2):
            self.procs.start(
                f"floor-worker-{i}", dramatiq, "bench.floor", *common, f"{self.prefix}.floor_worker", env=env
            )
        time.sleep(3)

    def start_celery(self) -> None:
        for i in (1, 2):
            self.procs.start(
                f"celery-{i}",
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
        time.sleep(5)

    def stop_all(self) -> None:
        self.procs.stop_all()

    # -- drivers: batches of `inflight` items, each waited for -----------------------------

    def chains(self, send, inflight: int, total: int, steps: int = STEPS) -> dict[str, float]:
        """Run `total` chains `inflight` at a time through `send(chain_id)`; latencies from PG."""
        ids: list[str] = []
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
        rows = self.sql("SELECT finished - started FROM floor_chains WHERE id = ANY(%s)", (ids,))
        latencies = [r[0] for r in rows]
        return {
            "per_step_ms_p50": pct(latencies, 0.5) / steps * 1000,
            "per_step_ms_p99": pct(latencies, 0.99) / steps * 1000,
            "per_second": total / wall,
        }

    def workflows(self, name: str, inflight: int, total: int, steps: int = STEPS) -> dict[str, float]:
        engine = self.runtime.engine
        ids: list[str] = []
        t0 = time.time()
        for start in range(0, total, inflight):
            batch = [engine.create(name, {})[0].id for _ in range(min(inflight, total - start))]
            self.wait(
                lambda b=batch: (
                    self.sql("SELECT count(*) FROM workflows WHERE id = ANY(%s) AND status <> 'In Progress'", (b,))[0][
                        0
                    ]
                    == len(b)
                )
            )
            ids += batch
        wall = time.time() - t0
        rows = self.sql(
            "SELECT extract(epoch FROM finished_at - created_at), status FROM workflows WHERE id = ANY(%s)", (ids,)
        )
        assert all(status == "Finished" for _, status in rows), "a benchmark workflow did not finish"
        latencies = [float(r[0]) for r in rows]
        return {
            "per_step_ms_p50": pct(latencies, 0.5) / steps * 1000,
            "per_step_ms_p99": pct(latencies, 0.99) / steps * 1000,
            "per_second": total / wall,
            "wall_s": wall,
        }

    @staticmethod
    def wait(condition, timeout_s: float = 600, every_s: float = 0.005) -> None:
        deadline = time.time() + timeout_s
        while not condition():
            if time.time() > deadline:
                raise TimeoutError("benchmark step did not finish")
            time.sleep(every_s)


def case_floor_and_sequential(b: Bench, rounds: int) -> dict[str, Any]:
    """Per-step cost: raw Dramatiq (with and without confirms+commit), Libero Flow, Celery."""
    total = 16 if b.quick else 48
    out: dict[str, Any] = {}
    for bare in (False, True):
        b.start_floor(bare)
        from bench import floor

        key = "floor_bare" if bare else "floor"
        out[key] = {}
        for inflight in (1, 4, 16):
            runs = [b.chains(lambda c: floor.floor_step.send(c, 1, STEPS), inflight, total) for _ in range(rounds)]
            out[key][inflight] = {k: median([r[k] for r in runs]) for k in runs[0]}
        b.stop_all()
    b.start_celery()
    from celery import chain

    from bench import celery_app

    out["celery"] = {}
    for inflight in (1, 4, 16):

        def send(c):
            chain(*[celery_app.noop.si(c) for _ in range(STEPS - 1)], celery_app.done.si(c)).apply_async()

        runs = [b.chains(send, inflight, total) for _ in range(rounds)]
        out["celery"][inflight] = {k: median([r[k] for r in runs]) for k in runs[0]}
    b.stop_all()
    b.start_flow()
    out["libero"] = {}
    for inflight in (1, 4, 16):
        runs = [b.workflows("Seq10", inflight, total) for _ in range(rounds)]
        out["libero"][inflight] = {k: median([r[k] for r in runs]) for k in runs[0]}
    b.stop_all()
    return out


def case_fanout(b: Bench, rounds: int) -> dict[str, Any]:
    """One workflow of 100 independent activities vs 100 raw messages through the same workers."""
    b.start_flow()
    flow_runs = [b.workflows("Fan100", 1, 1, steps=1)["wall_s"] for _ in range(rounds)]
    b.stop_all()
    b.start_floor(False)
    from bench import floor

    def raw() -> float:
        ids = [uuid.uuid4().hex for _ in range(100)]
        t0 = time.time()
        for c in ids:
            b.sql("INSERT INTO floor_chains (id, started) VALUES (%s, %s)", (c, t0))
        t0 = time.time()
        for c in ids:
            floor.floor_work.send(c, 1, 1)
        b.wait(
            lambda: (
                b.sql("SELECT count(*) FROM floor_chains WHERE id = ANY(%s) AND finished IS NOT NULL", (ids,))[0][0]
                == 100
            )
        )
        return time.time() - t0

    raw_runs = [raw() for _ in range(rounds)]
    b.stop_all()
    return {"libero_s": median(flow_runs), "raw_dramatiq_s": median(raw_runs)}


def case_throughput(b: Bench, rounds: int) -> dict[str, Any]:
    b.start_flow()
    total = 200 if b.quick else 1000
    result = b.workflows("Seq10", total, total)
    b.stop_all()
    return {"workflows": total, "activities_per_s": result["per_second"] * STEPS, "wall_s": result["wall_s"]}


def engine_stats(b: Bench) -> tuple[float, int]:
    [child] = child_pids(b.procs.procs["engine"].pid)
    status = Path(f"/proc/{child}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def case_scale(b: Bench, rounds: int) -> dict[str, Any]:
    """Engine memory, threads and the latency of one event with N workflows waiting on an
    activity. No activity worker runs, so every workflow keeps waiting; the event is a
    worker's "started" report for one of them, timed until it is committed."""
    b.procs.dramatiq("engine", f"{b.prefix}.engine", threads=THREADS, env={"FLOW_ACTOR_IDLE_S": "5"})
    time.sleep(3)
    from flow import messages

    out: dict[str, Any] = {}
    engine, settings = b.runtime.engine, b.runtime.settings
    created: list[str] = []
    for waiting in (100, 2000 if b.quick else 10_000):
        while len(created) < waiting:
            created.append(engine.create("Wait", {})[0].id)
        b.wait(
            lambda w=waiting: (
                b.sql(
                    "SELECT count(*) FROM activities a JOIN workflows w ON a.workflow_id = w.id "
                    "WHERE w.definition_name = 'Wait' AND a.status IN ('Scheduled', 'Started')"
                )[0][0]
                >= w
            )
        )
        time.sleep(7)  # let idle actors stop (FLOW_ACTOR_IDLE_S=5)
        rss_mb, threads = engine_stats(b)
        latencies = []
        for workflow_id in created[-5:]:
            t0 = time.perf_counter()
            b.runtime.broker.enqueue(
                messages.engine_message(
                    settings,
                    messages.RECORD_STARTED,
                    workflow_id=workflow_id,
                    position=0,
                    attempt=1,
                    started_at=messages.timestamp(__import__("flow.store").store.utcnow()),
                )
            )
            b.wait(
                lambda w=workflow_id: (
                    b.sql("SELECT status FROM activities WHERE workflow_id = %s", (w,))[0][0] == "Started"
                ),
                every_s=0.001,
            )
            latencies.append((time.perf_counter() - t0) * 1000)
        out[waiting] = {"engine_rss_mb": rss_mb, "engine_threads": threads, "event_ms": median(latencies)}
    small, big = sorted(k for k in out if isinstance(k, int))
    out["kib_per_waiting_workflow"] = (out[big]["engine_rss_mb"] - out[small]["engine_rss_mb"]) * 1024 / (big - small)
    out["event_latency_ratio"] = out[big]["event_ms"] / out[small]["event_ms"]
    b.stop_all()
    return out


def load(url: str, path: Any, seconds: float, clients: int = 8) -> dict[str, float]:
    """``clients`` threads GET ``url + path()`` for ``seconds``; requests/s and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def hammer() -> None:
        session = requests.Session()
        while time.time() < deadline:
            t = time.perf_counter()
            assert session.get(url + path(), timeout=10).status_code == 200
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
    }


def case_api(b: Bench, rounds: int) -> dict[str, Any]:
    rows = 20_000 if b.quick else 100_000
    b.sql(
        """INSERT INTO workflows (id, definition_name, definition_version, status, started, run, input_data, config,
           created_at, updated_at, version)
           SELECT md5(i::text), 'Seq10', 1, CASE WHEN i %% 3 = 0 THEN 'Failed' ELSE 'Finished' END, true, 1, '{}', '{}',
                  now() - (i || ' seconds')::interval, now(), 1
           FROM generate_series(1, %s) AS i""",
        (rows,),
    )
    b.sql(
        """INSERT INTO activities (workflow_id, position, name, independent, required, config, retry, timeouts, status,
             attempt, attempts_before) SELECT md5(i::text), 0, 'NoopActivity', false, true, '{}',
             '{"max_attempts": 1, "initial_delay_ms": 0, "backoff": 1, "max_delay_ms": 0, "jitter": 0}',
             '{"schedule_to_start_s": null, "start_to_close_s": null, "workflow_s": null}', 'Succeeded', 1, 0
             FROM generate_series(1, %s) AS i""",
        (rows,),
    )
    b.sql("ANALYZE")
    port = free_port()
    b.procs.gunicorn("api", port, workers=4)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")

    def workflow_path() -> str:
        return f"/workflows/{hashlib.md5(str(random.randint(1, rows)).encode()).hexdigest()}"

    seconds = 5 if b.quick else 15
    out: dict[str, Any] = {
        "get": load(url, workflow_path, seconds),
        "list": load(url, lambda: "/workflows?status=Failed&limit=50", seconds),
    }
    out["rows"] = rows
    b.stop_all()
    return out


CASES = {
    "sequential": case_floor_and_sequential,
    "fanout": case_fanout,
    "throughput": case_throughput,
    "scale": case_scale,
    "api": case_api,
}


def write_report(results: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    lines = [f"# Benchmark results ({'quick' if args.quick else 'full'} run, {args.rounds} rounds, medians)", ""]
    lines.append(
        f"Machine: {os.cpu_count()} cores; run took {seconds:.0f} s; "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    lines.append("")
    if "sequential" in results:
        seq = results["sequential"]
        lines += [
            "## Per-step cost of a 10-step sequence",
            "",
            "| system | in flight | per-step p50 ms | per-step p99 ms | sequences/s |",
            "|---|---|---|---|---|",
        ]
        for system in ("floor_bare", "floor", "celery", "libero"):
            for inflight, r in seq[system].items():
                p50, p99, rate = r["per_step_ms_p50"], r["per_step_ms_p99"], r["per_second"]
                lines.append(f"| {system} | {inflight} | {p50:.2f} | {p99:.2f} | {rate:.1f} |")
        lines.append("")
        for inflight in seq["libero"]:
            ratio = seq["libero"][inflight]["per_step_ms_p50"] / seq["floor"][inflight]["per_step_ms_p50"]
            vs_celery = seq["libero"][inflight]["per_second"] / seq["celery"][inflight]["per_second"]
            lines.append(
                f"- {inflight} in flight: Libero Flow per-step p50 = {ratio:.2f}x the floor "
                f"(target <= 1.5x); throughput = {vs_celery:.2f}x Celery's chain (target >= 1x)"
            )
        lines.append("")
    if "fanout" in results:
        f = results["fanout"]
        lines += [
            "## Fan-out: 100 independent activities",
            "",
            f"Libero Flow {f['libero_s']:.3f} s; raw Dramatiq, 100 messages through the same workers, "
            f"{f['raw_dramatiq_s']:.3f} s; ratio {f['libero_s'] / f['raw_dramatiq_s']:.2f}x (target <= 1.5x)",
            "",
        ]
    if "throughput" in results:
        t = results["throughput"]
        lines += [
            "## Throughput",
            "",
            f"{t['workflows']} workflows of 10 no-op steps, 2 worker processes: "
            f"{t['activities_per_s']:.0f} activities/s ({t['wall_s']:.1f} s)",
            "",
        ]
    if "scale" in results:
        sc = results["scale"]
        lines += [
            "## Waiting workflows",
            "",
            "| waiting | engine RSS MB | engine threads | one event ms |",
            "|---|---|---|---|",
        ]
        for k, v in sc.items():
            if isinstance(k, int):
                lines.append(f"| {k} | {v['engine_rss_mb']:.1f} | {v['engine_threads']} | {v['event_ms']:.2f} |")
        lines += [
            "",
            f"{sc['kib_per_waiting_workflow']:.2f} KiB per waiting workflow (target < 5); one event's latency "
            f"{sc['event_latency_ratio']:.2f}x the latency at 100 waiting (target <= 1.2x)",
            "",
        ]
    if "api" in results:
        a = results["api"]
        lines += [
            f"## API with {a['rows']} workflows stored (gunicorn, 4 workers; 8 client threads)",
            "",
            "| endpoint | requests/s | p50 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for label in ("get", "list"):
            lines.append(f"| {label} | {a[label]['rps']:.0f} | {a[label]['p50_ms']:.2f} | {a[label]['p99_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq = results.get("sequential")
    if not seq:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    systems = ["floor_bare", "floor", "celery", "libero"]
    inflights = list(seq["libero"])
    width = 0.2
    for i, system in enumerate(systems):
        xs = [x + i * width for x in range(len(inflights))]
        axes[0].bar(xs, [seq[system][n]["per_step_ms_p50"] for n in inflights], width, label=system)
        axes[1].bar(xs, [seq[system][n]["per_second"] for n in inflights], width, label=system)
    for ax, title in zip(axes, ("per-step latency p50 (ms)", "10-step sequences per second"), strict=True):
        ax.set_xticks([x + 1.5 * width for x in range(len(inflights))], [f"{n} in flight" for n in inflights])
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller cases, a few minutes in all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    args = parser.parse_args()
    require_services()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {}
    import tempfile

    with new_database() as pg_url, new_queue_prefix() as prefix, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(pg_url, prefix, Path(tmp), args.quick)
        try:
            for name in args.cases.split(","):
                print(f"== {name}", flush=True)
                try:
                    results[name] = CASES[name](bench, args.rounds)
                except Exception as e:  # report the other cases anyway
                    print(f"case {name} failed: {e!r}", flush=True)
                    bench.stop_all()
                    continue
                print(json.dumps(results[name], indent=1, default=str), flush=True)
        finally:
            bench.stop_all()
            bench.runtime.broker.close()
    report = write_report(results, args, time.time() - started)
    (RESULTS / "README.md").write_text(report + "\n\n![plot](results.png)\n")
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, RESULTS / "results.png")
    print(report)


if __name__ == "__main__":
    main()
