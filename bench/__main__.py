"""``python -m bench``: Libero Flow against raw Dramatiq and Celery, on the local RabbitMQ
and PostgreSQL, in one run. Prints a table; writes it, the raw figures and a plot to
``bench/results/``. ``--quick`` shrinks every case (a few minutes in all).

Cases (``--cases``, comma-separated): sequential, fanout, size, engines, throughput,
scale, api, prune, map, waiting, limits, open-loop, dbos. What each measures and against
which target is in bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import costs, dbos_peer, limits, maps, open_loop, prune
from bench import waiting as waits
from bench.harness import STEPS, THREADS, Bench, load, median, random_workflow, seed_ended_workflows
from flow.core.state import ActivityStatus
from flow.persistence.models import ActivityRecord
from flow.testing import (
    ROOT,
    ServicesUnavailable,
    check_services,
    child_pids,
    new_database,
    new_queue_prefix,
)

RESULTS = ROOT / "bench" / "results"
INFLIGHTS = (1, 16, 64)
WAITING = (ActivityStatus.SCHEDULED, ActivityStatus.STARTED)


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    # A figure this server cannot give (statements without pg_stat_statements) is None in every run.
    out: dict[str, Any] = {
        k: None if runs[0][k] is None else median([r[k] for r in runs]) for k in runs[0] if k != "cpu_ms_per_step"
    }
    out["cpu_ms_per_step"] = {
        group: median([r["cpu_ms_per_step"][group] for r in runs]) for group in runs[0]["cpu_ms_per_step"]
    }
    return out


def _total(b: Bench, inflight: int) -> int:
    return max(16, inflight * (2 if b.quick else 3))


def case_floor_and_sequential(b: Bench, rounds: int) -> dict[str, Any]:
    """10-step sequences: raw Dramatiq (with and without confirms+commit), Celery, Libero Flow."""
    out: dict[str, Any] = {}
    for key, bare in (("floor", False), ("floor_bare", True)):
        b.start_floor(bare)
        out[key] = {
            n: _medians(
                [b.chains(lambda c: b.send_floor("floor_step", c, 1, STEPS), n, _total(b, n)) for _ in range(rounds)]
            )
            for n in INFLIGHTS
        }
        b.stop_all()
    b.start_celery()
    out["celery"] = {
        n: _medians([b.chains(b.send_celery_chain, n, _total(b, n)) for _ in range(rounds)]) for n in INFLIGHTS
    }
    b.stop_all()
    b.start_flow()
    out["libero"] = {n: _medians([b.workflows("Seq10", n, _total(b, n)) for _ in range(rounds)]) for n in INFLIGHTS}
    b.stop_all()
    return out


def case_fanout(b: Bench, rounds: int) -> dict[str, Any]:
    """One workflow of N independent activities against N raw Dramatiq messages through the
    same workers (each recorded in PostgreSQL as it is handled)."""
    out: dict[str, Any] = {}
    b.start_flow()
    for n in (100, 1000):
        out[n] = {"libero_s": median([b.workflows(f"Fan{n}", 1, 1, steps=1)["wall_s"] for _ in range(rounds)])}
    b.stop_all()
    b.start_floor(False)

    def raw(n: int) -> float:
        ids = [uuid.uuid4().hex for _ in range(n)]
        b.sql("INSERT INTO floor_chains (id) SELECT unnest(%s::text[])", (ids,))
        t0 = time.time()
        for c in ids:
            b.send_floor("floor_work", c, 1, 1)
        b.wait(
            lambda: (
                b.sql("SELECT count(*) FROM floor_chains WHERE id = ANY(%s) AND finished IS NOT NULL", (ids,))[0][0]
                == n
            )
        )
        return time.time() - t0

    for n in (100, 1000):
        out[n]["raw_dramatiq_s"] = median([raw(n) for _ in range(rounds)])
        out[n]["ratio"] = out[n]["libero_s"] / out[n]["raw_dramatiq_s"]
    b.stop_all()
    return out


def case_size(b: Bench, rounds: int) -> dict[str, Any]:
    """Per-step cost of a 1,000-activity sequence against a 10-activity one, one at a time."""
    b.start_flow()
    ten = _medians([b.workflows("Seq10", 1, 10 if b.quick else 30) for _ in range(rounds)])
    thousand = _medians([b.workflows("Seq1000", 1, 1, steps=1000) for _ in range(rounds)])
    b.stop_all()
    per_step = {
        "10": ten["wall_s"] / (ten["steps_per_second"] * ten["wall_s"]) * 1000,
        "1000": thousand["wall_s"] / (thousand["steps_per_second"] * thousand["wall_s"]) * 1000,
    }
    return {"per_step_ms": per_step, "ratio": per_step["1000"] / per_step["10"]}


def case_engines(b: Bench, rounds: int) -> dict[str, Any]:
    """The same load (10-step sequences, 64 in flight) on 1, 2 and 4 engine processes:
    partitions held by each, throughput, commits refused by fencing or version."""
    out: dict[str, Any] = {}
    for engines in (1, 2, 4):
        b.start_flow(engines=engines)
        b.wait(lambda e=engines: len(live := b.live_engines()) == e and all(r.partitions_held for r in live), 120)
        refused_before = sum(r.refused_commits for r in b.live_engines())
        result = _medians([b.workflows("Seq10", 64, _total(b, 64)) for _ in range(rounds)])
        time.sleep(b.runtime.settings.partition_lease_s / 3 + 1)  # one more heartbeat carries the counts
        rows = b.live_engines()
        out[engines] = {
            "partitions_held": sorted((r.partitions_held for r in rows), reverse=True),
            "sequences_per_s": result["per_second"],
            "steps_per_s": result["steps_per_second"],
            "refused_commits": sum(r.refused_commits for r in rows) - refused_before,
            "cpu_ms_per_step": result["cpu_ms_per_step"],
        }
        b.stop_all()
        b.forget_engines()
    return out


def case_throughput(b: Bench, rounds: int) -> dict[str, Any]:
    b.start_flow()
    total = 200 if b.quick else 1000
    result = b.workflows("Seq10", total, total)
    b.stop_all()
    return {"workflows": total, "activities_per_s": result["steps_per_second"], "wall_s": result["wall_s"]}


def engine_stats(b: Bench) -> tuple[float, int]:
    [child] = child_pids(b.procs.procs["engine-0"].pid)
    status = Path(f"/proc/{child}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def case_scale(b: Bench, rounds: int) -> dict[str, Any]:
    """Engine memory, threads and the latency of one event with N workflows waiting on an
    activity. No activity worker runs, so every workflow keeps waiting; the event is a
    worker's "started" report for one of them, timed until it is committed."""
    b.procs.dramatiq("engine-0", f"{b.prefix}.engine", threads=THREADS, env={"FLOW_ACTOR_IDLE_S": "5"})
    b.wait(lambda: b._partitions_held() == b.service.partitions, timeout_s=120)
    from flow.clock import utcnow
    from flow.wire import messages

    out: dict[str, Any] = {}
    service = b.runtime.service
    created: list[str] = []
    for waiting in (100, 2000 if b.quick else 10_000):
        while len(created) < waiting:
            created.append(service.start("Wait", {})[0].id)
        b.wait(lambda w=waiting: b.activities_of("Wait", WAITING) >= w)
        time.sleep(12)  # let idle actors stop (FLOW_ACTOR_IDLE_S=5, swept every 2.5 s)
        rss_mb, threads = engine_stats(b)
        latencies = []
        for workflow_id in created[-5:]:
            t0 = time.perf_counter()
            started = messages.AttemptStarted(workflow_id=workflow_id, position=0, attempt=1, started_at=utcnow())
            b.runtime.broker.enqueue(started.to_message(service.queue_of(workflow_id)))
            b.wait(
                lambda w=workflow_id: (
                    ActivityRecord.select(ActivityRecord.status).where(ActivityRecord.workflow == w).scalar()
                    == ActivityStatus.STARTED
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


def case_api(b: Bench, rounds: int) -> dict[str, Any]:
    rows = 20_000 if b.quick else 100_000
    seed_ended_workflows(b, rows)
    b.sql("ANALYZE")
    url = b.start_api()
    seconds = 5 if b.quick else 15
    out: dict[str, Any] = {
        "get": load(url, random_workflow(rows), seconds),
        "list": load(url, lambda: "/workflows?status=Failed&limit=50", seconds),
    }
    out["rows"] = rows
    b.stop_all()
    return out


CASES = {
    "sequential": case_floor_and_sequential,
    "fanout": case_fanout,
    "size": case_size,
    "engines": case_engines,
    "throughput": case_throughput,
    "scale": case_scale,
    "api": case_api,
    "prune": prune.case_prune,
    "map": maps.case_map,
    "waiting": waits.case_waiting,
    "limits": limits.case_limits,
    "open-loop": open_loop.case_open_loop,
    "dbos": dbos_peer.case_dbos,
}


def met(ok: bool) -> str:
    return "met" if ok else "missed"


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
            "## 10-step sequences",
            "",
            "| system | in flight | per-step p50 ms | per-step p99 ms | steps/s | CPU ms per step: engine / workers / "
            "RabbitMQ / PostgreSQL / driver |",
            "|---|---|---|---|---|---|",
        ]
        for system in ("floor_bare", "floor", "celery", "libero"):
            for inflight, r in seq[system].items():
                cpu = r["cpu_ms_per_step"]
                cpu_text = " / ".join(f"{cpu[g]:.2f}" for g in ("engine", "workers", "rabbitmq", "postgres", "driver"))
                lines.append(
                    f"| {system} | {inflight} | {r['per_step_ms_p50']:.2f} | {r['per_step_ms_p99']:.2f} | "
                    f"{r['steps_per_second']:.0f} | {cpu_text} |"
                )
        lines += ["", *costs.report(seq)]
        for inflight in seq["libero"]:
            libero, floor, celery = seq["libero"][inflight], seq["floor"][inflight], seq["celery"][inflight]
            vs_floor = libero["steps_per_second"] / floor["steps_per_second"]
            vs_celery = libero["steps_per_second"] / celery["steps_per_second"]
            latency = libero["per_step_ms_p50"] / floor["per_step_ms_p50"]
            parts = [f"- {inflight} in flight: steps/s {vs_floor:.2f}x the floor"]
            if int(inflight) >= 16:
                parts.append(f"(target >= 0.8x: {met(vs_floor >= 0.8)})")
            parts.append(f"and {vs_celery:.2f}x Celery's chain")
            if int(inflight) == 64:
                parts.append(f"(stretch >= 1x: {met(vs_celery >= 1)})")
            parts.append(f"; per-step p50 {latency:.2f}x the floor")
            if int(inflight) == 1:
                parts.append(f"(target <= 1.5x: {met(latency <= 1.5)})")
            lines.append(" ".join(parts))
        lines.append("")
    if "fanout" in results:
        lines += ["## Independent activities in one workflow", ""]
        for n, f in results["fanout"].items():
            lines.append(
                f"- {n}: Libero Flow {f['libero_s']:.3f} s; raw Dramatiq, {n} messages through the same workers, "
                f"{f['raw_dramatiq_s']:.3f} s; {f['ratio']:.2f}x (target <= 1.5x: {met(f['ratio'] <= 1.5)})"
            )
        lines.append("")
    if "size" in results:
        sz = results["size"]
        lines += [
            "## Per-step cost against the workflow's size",
            "",
            f"10 activities {sz['per_step_ms']['10']:.2f} ms per step; 1,000 activities "
            f"{sz['per_step_ms']['1000']:.2f} ms per step; {sz['ratio']:.2f}x "
            f"(target <= 1.2x: {met(sz['ratio'] <= 1.2)})",
            "",
        ]
    if "engines" in results:
        lines += [
            "## Engines: the same load (10-step sequences, 64 in flight) on 1, 2 and 4 engine processes",
            "",
            "| engines | partitions held by each | steps/s | commits refused | engine CPU ms per step |",
            "|---|---|---|---|---|",
        ]
        for n, e in results["engines"].items():
            lines.append(
                f"| {n} | {', '.join(map(str, e['partitions_held']))} | {e['steps_per_s']:.0f} | "
                f"{e['refused_commits']} | {e['cpu_ms_per_step']['engine']:.2f} |"
            )
        lines.append("")
    if "throughput" in results:
        t = results["throughput"]
        lines += [
            "## Throughput",
            "",
            f"{t['workflows']} workflows of 10 no-op steps at once, 2 worker processes: "
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
    if "prune" in results:
        lines += prune.report(results["prune"])
    if "map" in results:
        lines += maps.report(results["map"])
    if "waiting" in results:
        lines += waits.report(results["waiting"])
    if "limits" in results:
        lines += limits.report(results["limits"])
    if "open-loop" in results:
        lines += open_loop.report(results["open-loop"])
    if "dbos" in results:
        lines += dbos_peer.report(results["dbos"])
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    seq = results.get("sequential")
    if not seq:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    systems = ["floor_bare", "floor", "celery", "libero"]
    inflights = list(seq["libero"])
    width = 0.2
    for i, system in enumerate(systems):
        xs = [x + i * width for x in range(len(inflights))]
        axes[0].bar(xs, [seq[system][n]["per_step_ms_p50"] for n in inflights], width, label=system)
        axes[1].bar(xs, [seq[system][n]["steps_per_second"] for n in inflights], width, label=system)
    for ax, title in zip(axes, ("per-step latency p50 (ms)", "steps per second"), strict=True):
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
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where to write the report (default: %(default)s)"
    )
    parser.add_argument("--rates", default=None, help="open-loop: start rates per second (default: 50,100,200,400)")
    parser.add_argument("--seconds", type=float, default=None, help="open-loop: seconds at each rate (default: 20)")
    args = parser.parse_args()
    needed = ("celery", "matplotlib", *(("dbos",) if "dbos" in args.cases.split(",") else ()))
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        # Checked first: finding out at the end of a long run, when the plot is drawn, wastes it.
        raise SystemExit(f"python -m bench needs {' and '.join(missing)}: pip install -e '.[bench]'")
    try:
        check_services()
    except ServicesUnavailable as e:
        raise SystemExit(f"python -m bench needs the local PostgreSQL and RabbitMQ: {e}") from None
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {}
    with new_database() as pg_url, new_queue_prefix() as prefix, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(pg_url, prefix, Path(tmp), args.quick)
        bench.open_loop_rates = [float(r) for r in args.rates.split(",")] if args.rates else None
        bench.open_loop_s = args.seconds
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
            bench.close()
    report = write_report(results, args, time.time() - started)
    picture = "\n\n![plot](results.png)" if "sequential" in results else ""  # the plot is of that case
    (args.results / "README.md").write_text(report + picture + "\n")
    (args.results / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, args.results / "results.png")
    if "open-loop" in results:
        open_loop.plot(results["open-loop"], args.results / "open_loop.png")
    print(report)


if __name__ == "__main__":
    main()
