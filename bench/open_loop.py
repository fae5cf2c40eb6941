"""The open-loop case (issue 25; how Hatchet and Temporal measure): workflows of 10 no-op
steps started at fixed rates for a fixed time, whether or not the earlier ones ended,
instead of "N at once, wait, N again".

Per offered rate: the achieved rate (workflows ended per second, from the first
intended start to the last end), start-to-end latency p50/p95/p99 measured from each
workflow's *intended* start time (a start the driver sent late still counts its wait:
no coordinated omission) and per step (over 10), the engine's CPU per step, PostgreSQL's
CPU per second (its processes, read from ``/proc``) and WAL bytes per second, and the
knee: the first rate at which the system no longer keeps up (achieved < 90% offered)
or its p50 is more than twice the lowest rate's (:func:`bench.proc.knee`). A plot goes
to ``open_loop.png`` beside the report.

Rates and time: ``--rates 50,100,200,400 --seconds 20`` (``--quick``: 5 s).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

from bench.harness import STEPS, Bench
from bench.proc import knee, percentile
from flow.persistence.models import WorkflowRecord

RATES = (50, 100, 200, 400)
#: Threads that send the starts (a start is a commit and a publish: one thread is not 400 a second).
STARTERS = 8


def _epoch(moment: Any) -> float:
    return moment.replace(tzinfo=UTC).timestamp()  # stored naive, in UTC


def _warm(b: Bench, pool: ThreadPoolExecutor) -> None:
    """One start from each starter thread (each opens its database connection and broker
    channel on its first start: hundreds of ms that would make the first rate's starts late)."""
    together = threading.Barrier(STARTERS)

    def first(_: int) -> str:
        together.wait(timeout=60)
        return b.service.start("Seq10", {})[0].id

    ids = list(pool.map(first, range(STARTERS)))
    b.wait(lambda: b.ended(ids) == len(ids), timeout_s=120)


def one_rate(b: Bench, pool: ThreadPoolExecutor, rate: float, seconds: float) -> dict[str, Any]:
    count = max(1, int(rate * seconds))
    t0 = time.time() + 0.5
    intended = [t0 + i / rate for i in range(count)]
    ids: list[str] = [""] * count
    sent_at = [0.0] * count

    def starter(first: int) -> None:
        for i in range(first, count, STARTERS):
            delay = intended[i] - time.time()
            if delay > 0:
                time.sleep(delay)
            sent_at[i] = time.time()
            ids[i] = b.service.start("Seq10", {})[0].id

    pg_before, cpu_before = b.pg.snapshot(), b.cpu_snapshot()
    for done in [pool.submit(starter, k) for k in range(STARTERS)]:
        done.result()
    b.wait(lambda: b.ended(ids) == count, timeout_s=max(120.0, seconds * 6))
    cpu_after, pg_after = b.cpu_snapshot(), b.pg.settled()
    pg = b.pg.per(pg_before, pg_after, count * STEPS)
    rows = {r.id: r for r in WorkflowRecord.select().where(WorkflowRecord.id.in_(ids))}
    ends = [_epoch(rows[w].finished_at) for w in ids]
    wall = max(ends) - t0
    latencies = [end - start for end, start in zip(ends, intended, strict=True)]
    late = [sent - start for sent, start in zip(sent_at, intended, strict=True)]
    cpu_s = {g: cpu_after[g] - cpu_before[g] for g in cpu_after}
    figures: dict[str, Any] = {"offered_per_s": rate, "workflows": count, "achieved_per_s": count / wall}
    for q in (0.5, 0.95, 0.99):
        name = f"p{int(q * 100)}"
        figures[f"start_to_end_ms_{name}"] = percentile(latencies, q) * 1000
        figures[f"per_step_ms_{name}"] = percentile(latencies, q) * 1000 / STEPS
    figures.update(
        {
            "start_sent_late_ms_p99": percentile(late, 0.99) * 1000,
            "engine_cpu_us_per_step": cpu_s["engine"] * 1e6 / (count * STEPS),
            "pg_cpu_s_per_s": cpu_s["postgres"] / wall,
            "wal_bytes_per_s": b.pg.wal_bytes(pg_before, pg_after) / wall,
            **pg,
        }
    )
    return figures


def case_open_loop(b: Bench, rounds: int) -> dict[str, Any]:
    rates = b.open_loop_rates or RATES
    seconds = b.open_loop_s or (5.0 if b.quick else 20.0)
    b.start_flow()
    try:
        with ThreadPoolExecutor(max_workers=STARTERS) as pool:
            _warm(b, pool)
            points = {str(rate): one_rate(b, pool, rate, seconds) for rate in rates}
    finally:
        b.stop_all()
    found = knee(
        [(p["offered_per_s"], p["achieved_per_s"], p["start_to_end_ms_p50"]) for p in points.values()], keep_up=0.9
    )
    return {"seconds": seconds, "rates": points, "knee_per_s": found}


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        f"## Open loop: 10-step workflows started at fixed rates for {result['seconds']:.0f} s each",
        "",
        "| offered /s | achieved /s | start-to-end p50 / p95 / p99 ms | per step p50 / p95 / p99 ms | "
        "engine CPU µs per step | PostgreSQL CPU s per s | WAL KB per s |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["rates"].values():
        ends = " / ".join(f"{p[f'start_to_end_ms_p{q}']:.0f}" for q in (50, 95, 99))
        steps = " / ".join(f"{p[f'per_step_ms_p{q}']:.1f}" for q in (50, 95, 99))
        lines.append(
            f"| {p['offered_per_s']:.0f} | {p['achieved_per_s']:.1f} | {ends} | {steps} | "
            f"{p['engine_cpu_us_per_step']:.0f} | {p['pg_cpu_s_per_s']:.2f} | {p['wal_bytes_per_s'] / 1024:.0f} |"
        )
    knee_text = "none of the rates" if result["knee_per_s"] is None else f"{result['knee_per_s']:.0f} per s"
    lines += [
        "",
        f"Knee (achieved < 90% of offered, or p50 over twice the lowest rate's): {knee_text}.",
        "",
        "![open loop](open_loop.png)",
        "",
    ]
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = list(result["rates"].values())
    offered = [p["offered_per_s"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(offered, [p["achieved_per_s"] for p in points], "o-", label="achieved")
    axes[0].plot(offered, offered, "--", color="grey", label="offered")
    axes[0].set_title("workflows per second")
    for q in (50, 95, 99):
        axes[1].plot(offered, [p[f"start_to_end_ms_p{q}"] for p in points], "o-", label=f"p{q}")
    axes[1].set_yscale("log")
    axes[1].set_title("start to end (ms, from the intended start)")
    for ax in axes:
        ax.set_xlabel("offered workflows per second")
        ax.legend()
        if result["knee_per_s"] is not None:
            ax.axvline(result["knee_per_s"], color="red", linestyle=":")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["RATES", "case_open_loop", "one_rate", "plot", "report"]
