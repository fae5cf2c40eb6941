"""The durable peer (issue 25): DBOS Transact, 10-step workflows of no-op steps on the
same local PostgreSQL, 1, 16 and 64 in flight, driven as the harness drives Libero Flow
(closed batches: ``in flight`` workflows started together, all waited for, then the
next batch).

DBOS is a library: its workflows run in the process that starts them, checkpointing
each step's result in its system database (one PostgreSQL commit per step, as ours).
So this runs in a process of its own (``python -m bench.dbos_peer``), started by
``python -m bench --cases dbos``, and its CPU is that process's (``/proc/self/stat``).
It needs the extra: ``pip install -e '.[bench]'`` (``dbos``).

Prints one JSON object: per in-flight count, per-step p50/p99 (start to result, over
10), steps per second, and the process's CPU per step.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench.proc import cpu_s, percentile

if TYPE_CHECKING:
    from bench.harness import Bench

median = statistics.median

STEPS = 10


def _build(pg_url: str) -> Any:
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "libero-bench-peer",
        "system_database_url": pg_url,
        "log_level": "WARNING",
        "max_executor_threads": 128,
    }
    DBOS(config=config)

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def seq10() -> int:
        total = 0
        for i in range(STEPS):
            total += noop(i)
        return total

    DBOS.launch()
    return DBOS, seq10


def run(pg_url: str, inflights: list[int], total_for: dict[int, int]) -> dict[str, Any]:
    dbos, seq10 = _build(pg_url)
    out: dict[str, Any] = {}
    try:
        for _ in range(2):  # warm-up: connections and prepared paths
            dbos.start_workflow(seq10).get_result()
        with ThreadPoolExecutor(max_workers=max(inflights)) as pool:
            for inflight in inflights:
                total = total_for[inflight]
                latencies: list[float] = []
                cpu0, t0 = cpu_s(os.getpid()), time.perf_counter()
                for start in range(0, total, inflight):
                    batch = min(inflight, total - start)

                    def one(_: int) -> float:
                        began = time.perf_counter()
                        dbos.start_workflow(seq10).get_result()
                        return time.perf_counter() - began

                    latencies += list(pool.map(one, range(batch)))
                wall = time.perf_counter() - t0
                cpu = cpu_s(os.getpid()) - cpu0
                out[str(inflight)] = {
                    "per_step_ms_p50": percentile(latencies, 0.5) / STEPS * 1000,
                    "per_step_ms_p99": percentile(latencies, 0.99) / STEPS * 1000,
                    "steps_per_second": total * STEPS / wall,
                    "cpu_us_per_step": round(cpu * 1e6 / (total * STEPS), 1),
                    "workflows": total,
                }
    finally:
        dbos.destroy()
    return out


def case_dbos(b: Bench, rounds: int) -> dict[str, Any]:
    """DBOS beside Libero Flow in the same run: 10-step no-op workflows at 1, 16 and 64 in flight."""
    if importlib.util.find_spec("dbos") is None:
        raise RuntimeError("the dbos case needs DBOS: pip install -e '.[bench]'")
    inflights = (1, 16, 64)
    totals = [max(16, n * (2 if b.quick else 3)) for n in inflights]
    command = [sys.executable, "-m", "bench.dbos_peer", "--pg", b.pg_url, "--inflight", "1,16,64"]
    command += ["--total", ",".join(map(str, totals))]
    runs = [
        json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout) for _ in range(rounds)
    ]
    dbos = {str(n): {k: median([r[str(n)][k] for r in runs]) for k in runs[0][str(n)]} for n in inflights}
    b.start_flow()
    try:
        libero = {}
        for n, total in zip(inflights, totals, strict=True):
            figures = [b.workflows("Seq10", n, total) for _ in range(rounds)]
            libero[str(n)] = {
                k: median([f[k] for f in figures])
                for k in ("per_step_ms_p50", "per_step_ms_p99", "steps_per_second", "engine_cpu_us_per_step")
            }
    finally:
        b.stop_all()
    return {"dbos": dbos, "libero": libero}


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        "## A durable peer: DBOS Transact, 10-step no-op workflows on the same PostgreSQL",
        "",
        "| in flight | DBOS steps/s | Libero Flow steps/s | ratio | DBOS per-step p50 ms | Libero Flow per-step "
        "p50 ms | DBOS process CPU µs per step | Libero Flow engine CPU µs per step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, d in result["dbos"].items():
        lf = result["libero"][n]
        lines.append(
            f"| {n} | {d['steps_per_second']:.0f} | {lf['steps_per_second']:.0f} | "
            f"{lf['steps_per_second'] / d['steps_per_second']:.2f}x | {d['per_step_ms_p50']:.2f} | "
            f"{lf['per_step_ms_p50']:.2f} | {d['cpu_us_per_step']:.0f} | {lf['engine_cpu_us_per_step']:.0f} |"
        )
    lines += [
        "",
        "DBOS runs its steps in the process that starts them (one process, its executor threads); Libero "
        "Flow's steps go through RabbitMQ to two worker processes and back, so the CPU columns are not the "
        "same thing: DBOS's is everything it does, ours is the engine's share.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_peer")
    parser.add_argument("--pg", required=True, help="PostgreSQL URL of a database of the bench's own")
    parser.add_argument("--inflight", default="1,16,64")
    parser.add_argument("--total", default="", help="workflows per in-flight count, e.g. 16,48,192")
    args = parser.parse_args(argv)
    inflights = [int(x) for x in args.inflight.split(",")]
    totals = [int(x) for x in args.total.split(",")] if args.total else [max(16, n * 3) for n in inflights]
    json.dump(run(args.pg, inflights, dict(zip(inflights, totals, strict=True))), sys.stdout)
    print()


if __name__ == "__main__":
    main()
