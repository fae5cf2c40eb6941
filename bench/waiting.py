"""The ``waiting`` case: workflows waiting on a signal or a sleep (issue 15's targets).

100 and then 10,000 (quick: 2,000) workflows wait, half on the signal ``approved``
(``Approval``: a ``wait_for`` step, then a ``NoopActivity``), half on an hour's sleep
(``Nap``: a ``sleep_s`` step, then the same). At each level, once the engine's idle
actors have stopped:

- the engine process's threads and RSS (read from ``/proc``); the targets are threads
  within the live-actor bound and under 5 KiB of RSS per waiting workflow, the
  difference between the two levels over the difference in workflows;
- the latency of a signal: ``POST /workflows/{id}/signals/approved`` through gunicorn
  until the next activity's row is committed ``Scheduled`` (polled every millisecond),
  and until its ``scheduled_at`` (stamped by the engine when it received the signal),
  sent one at a time to ``--rounds`` batches of 50 more ``Approval`` workflows, each
  batch signalled once their actors have stopped too; the target is the median at
  10,000 within 1.2x the median at 100.

No activity worker runs: what is measured is the engine alone, and the activity a
signal schedules stays ``Scheduled``. Workflows are started through the start service as
the API does (one statement and one publish each), from a few threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import requests

from bench.harness import THREADS, Bench, median, pct
from flow.core.state import ActivityStatus
from flow.loops import poll_until
from flow.persistence.models import ActivityRecord
from flow.testing import child_pids

#: The engine's live-actor bound and idle time in this case (FLOW_MAX_LIVE_ACTORS,
#: FLOW_ACTOR_IDLE_S): a bound well below the waiting count, and actors that stop soon.
MAX_LIVE = 200
IDLE_S = 5.0
SIGNALS = 50
#: Targets: bytes of engine RSS per waiting workflow; the signal's median latency at the
#: large level over the small one.
TARGET_BYTES = 5 * 1024
TARGET_RATIO = 1.2
#: Threads the driver starts workflows from.
STARTERS = 4


def _engine_pid(b: Bench) -> int:
    """The engine's Dramatiq worker process (the child of ``dramatiq``'s master)."""
    [child] = child_pids(b.procs.procs["engine-0"].pid)
    return child


def _status(pid: int) -> tuple[int, int]:
    """``(rss_bytes, threads)`` of ``pid``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])


@contextlib.contextmanager
def _peak_threads(pid: int) -> Iterator[list[int]]:
    """Sample ``pid``'s threads every 0.1 s meanwhile; the list holds the highest seen."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], _status(pid)[1])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def _start(b: Bench, names: list[str], label: str) -> list[str]:
    """Start one workflow of each name in ``names``; their ids, in order. Prints progress."""
    ids: list[str] = []
    lock = threading.Lock()
    t0 = time.time()

    def one(name: str) -> str:
        workflow_id = b.service.start(name, {})[0].id
        with lock:
            ids.append(workflow_id)
            if len(ids) % 1000 == 0:
                print(f"  {label}: {len(ids)}/{len(names)} started ({time.time() - t0:.0f} s)", flush=True)
        return workflow_id

    with ThreadPoolExecutor(STARTERS) as pool:
        return list(pool.map(one, names))


def _waiting(ids: list[str]) -> int:
    """How many of ``ids`` have their first step Waiting (sleeping or waiting for the signal)."""
    waiting = 0
    for start in range(0, len(ids), 5000):
        waiting += (
            ActivityRecord.select()
            .where(
                ActivityRecord.workflow.in_(ids[start : start + 5000]),
                ActivityRecord.position == 0,
                ActivityRecord.status == ActivityStatus.WAITING,
            )
            .count()
        )
    return waiting


def _wait_waiting(b: Bench, ids: list[str], label: str) -> float:
    """Wait until every one of ``ids`` waits; seconds since called."""
    t0 = time.time()
    last = [0.0]

    def done() -> bool:
        count = _waiting(ids)
        if time.time() - last[0] > 5:
            print(f"  {label}: {count}/{len(ids)} waiting ({time.time() - t0:.0f} s)", flush=True)
            last[0] = time.time()
        return count == len(ids)

    b.wait(done, timeout_s=600, every_s=0.5)
    return time.time() - t0


def _next_scheduled(workflow_id: str) -> Any:
    """The scheduled_at of the workflow's second step once it is Scheduled, else None."""
    return (
        ActivityRecord.select(ActivityRecord.scheduled_at)
        .where(
            ActivityRecord.workflow == workflow_id,
            ActivityRecord.position == 1,
            ActivityRecord.status == ActivityStatus.SCHEDULED,
        )
        .scalar()
    )


def _signal_latencies(url: str, ids: list[str]) -> tuple[list[float], list[float]]:
    """POST the signal to each of ``ids`` in turn; the latencies (ms) until the next step is
    committed Scheduled, and until its scheduled_at."""
    session = requests.Session()
    committed, stamped = [], []
    for workflow_id in ids:
        t0 = time.time()
        answer = session.post(f"{url}/workflows/{workflow_id}/signals/approved", json={"payload": {"ok": True}})
        assert answer.status_code == 202, (answer.status_code, answer.text[:200])
        scheduled_at = poll_until(
            lambda w=workflow_id: _next_scheduled(w), timeout_s=60, every_s=0.001, what="the next step scheduled"
        )
        committed.append((time.time() - t0) * 1000)
        stamped.append((scheduled_at.replace(tzinfo=UTC).timestamp() - t0) * 1000)
    return committed, stamped


def _signal_waiting(b: Bench, url: str, pid: int, idle_threads: int, label: str) -> tuple[list[float], list[float]]:
    """Start SIGNALS Approval workflows, wait until they wait and every actor has stopped
    (the engine back to its idle threads), then signal them; their latencies."""
    targets = _start(b, ["Approval"] * SIGNALS, label)
    _wait_waiting(b, targets, label)
    _wait_idle(b, pid, idle_threads)
    return _signal_latencies(url, targets)


def _wait_idle(b: Bench, pid: int, idle_threads: int) -> None:
    """Wait until the engine's actors have all stopped: its threads are those it had idle."""
    b.wait(lambda: _status(pid)[1] <= idle_threads, timeout_s=IDLE_S * 4 + 30, every_s=0.5)


def case_waiting(b: Bench, rounds: int) -> dict[str, Any]:
    env = {"FLOW_MAX_LIVE_ACTORS": str(MAX_LIVE), "FLOW_ACTOR_IDLE_S": str(IDLE_S)}
    b.procs.dramatiq("engine-0", f"{b.prefix}.engine", threads=THREADS, env=env)
    b.wait(lambda: b._partitions_held() == b.service.partitions, timeout_s=120)
    url = b.start_api(workers=1)
    pid = _engine_pid(b)
    # A warm-up, not counted: every connection made and every cache warm. Then the
    # engine's threads once its actors have stopped (within IDLE_S and a sweep, every
    # IDLE_S / 2), the mark that later waits for idleness are held to.
    warm_up = _start(b, ["Approval"] * SIGNALS, "warm-up")
    _wait_waiting(b, warm_up, "warm-up")
    _signal_latencies(url, warm_up)
    time.sleep(IDLE_S * 2 + 3)
    idle_threads = _status(pid)[1]
    out: dict[str, Any] = {"max_live_actors": MAX_LIVE, "actor_idle_s": IDLE_S, "idle_threads": idle_threads}
    waiting: list[str] = []
    for level in (100, 2000 if b.quick else 10_000):
        names = ["Approval", "Nap"] * ((level - len(waiting)) // 2)
        with _peak_threads(pid) as peak:
            t0 = time.time()
            waiting += _start(b, names, f"{level} waiting")
            started_s = time.time() - t0
            _wait_waiting(b, waiting, f"{level} waiting")
            all_waiting_s = time.time() - t0
            _wait_idle(b, pid, idle_threads)
        rss, threads = _status(pid)
        committed: list[float] = []
        stamped: list[float] = []
        round_p50s = []
        for i in range(rounds):
            c, s = _signal_waiting(b, url, pid, idle_threads, f"{level} waiting, signals round {i + 1}")
            committed += c
            stamped += s
            round_p50s.append(median(c))
        out[level] = {
            "engine_rss_bytes": rss,
            "engine_threads": threads,
            "peak_threads_while_starting": peak[0],
            "start_s": started_s,
            "all_waiting_s": all_waiting_s,
            "signals": len(committed),
            "committed_ms_p50": median(committed),
            "committed_ms_p95": pct(committed, 0.95),
            "committed_ms_p50_by_round": round_p50s,
            "scheduled_at_ms_p50": median(stamped),
            "scheduled_at_ms_p95": pct(stamped, 0.95),
            # Other work on the machine shows in the latencies: the 1-minute load when done.
            "load_average": os.getloadavg()[0],
        }
        print(f"  {level} waiting: {out[level]}", flush=True)
    small, big = sorted(k for k in out if isinstance(k, int))
    out["bytes_per_waiting_workflow"] = (out[big]["engine_rss_bytes"] - out[small]["engine_rss_bytes"]) / (big - small)
    out["signal_latency_ratio"] = out[big]["committed_ms_p50"] / out[small]["committed_ms_p50"]
    out["scheduled_at_latency_ratio"] = out[big]["scheduled_at_ms_p50"] / out[small]["scheduled_at_ms_p50"]
    b.stop_all()
    return out


def report(results: dict[str, Any]) -> list[str]:
    """The case's lines in ``bench/results/README.md``."""
    levels = {int(k): v for k, v in results.items() if str(k).isdigit()}
    small, big = min(levels), max(levels)
    lines = [
        "## Workflows waiting on a signal or a sleep",
        "",
        f"Half wait for the signal `approved`, half sleep for an hour; one engine process with "
        f"`FLOW_MAX_LIVE_ACTORS={results['max_live_actors']}`, `FLOW_ACTOR_IDLE_S={results['actor_idle_s']:g}`, "
        f"{results['idle_threads']} threads with no actor. A signal's latency: "
        "`POST /workflows/{id}/signals/approved` (gunicorn, 1 worker) until the next activity's row is committed "
        "`Scheduled` (polled every ms), and until its `scheduled_at` (stamped when the engine received the "
        f"signal); {levels[small]['signals']} signals at each level, one at a time, to workflows whose actors "
        "had stopped.",
        "",
        "| waiting | engine RSS MiB | engine threads | peak threads while starting | signal to committed p50 / p95 ms "
        "| signal to scheduled_at p50 / p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for level, r in sorted(levels.items()):
        lines.append(
            f"| {level} | {r['engine_rss_bytes'] / 2**20:.1f} | {r['engine_threads']} | "
            f"{r['peak_threads_while_starting']} | {r['committed_ms_p50']:.2f} / {r['committed_ms_p95']:.2f} | "
            f"{r['scheduled_at_ms_p50']:.2f} / {r['scheduled_at_ms_p95']:.2f} |"
        )
    per = results["bytes_per_waiting_workflow"]
    ratio = results["signal_latency_ratio"]
    threads = levels[big]["engine_threads"]
    bound = results["idle_threads"] + results["max_live_actors"]
    peak = max(r["peak_threads_while_starting"] for r in levels.values())
    lines += [
        "",
        f"- {per:.0f} bytes of engine RSS per waiting workflow: the RSS difference over the {big - small} "
        f"workflows between the levels (target < {TARGET_BYTES}: {'met' if per < TARGET_BYTES else 'missed'})",
        f"- {threads} engine threads with {big} waiting, {levels[small]['engine_threads']} with {small}: a waiting "
        f"workflow holds no thread (target: within the bound of {bound}, idle threads + live actors: "
        f"{'met' if threads <= bound else 'missed'}); at most {peak} while they were being started"
        + (
            " (the bound counts live actors; the thread of a surplus actor ends a moment after it is told to "
            "stop, which is not waited for)"
            if peak > bound
            else ""
        ),
        f"- a signal's p50 latency with {big} waiting {ratio:.2f}x the p50 with {small} (target <= "
        f"{TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'missed'}); to `scheduled_at` "
        f"{results['scheduled_at_latency_ratio']:.2f}x",
        "",
    ]
    return lines
