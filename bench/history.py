"""The long-history bench (issue 25): what a new event costs a workflow whose history
holds 10,000 entries, against one whose history holds 100.

One embedded Libero Flow on SQLite (a temporary directory; no service needed). Two
ways a history grows, each at both sizes (and a third: the same signals to a workflow
whose actor has to be rebuilt first):

- signals: a workflow waits for the signal ``never`` and is sent signals named
  ``noise`` (kept until the inbox's 1,000, then dropped with a ``do-nothing``): two
  entries each. Once its history holds the size, more signals are sent one at a time,
  alternately to the small and the large workflow; per signal, the latency from the
  send (the start service's ``signal``, as the API calls it) until its history entry
  is committed.
- signals, cold: the same on an engine whose actors stop after 0.1 s idle, each signal
  sent once the workflow's actor has stopped, so each event first loads the workflow
  (its row, its steps, its inbox: every signal it kept or took, at most 1,000 kept).
- map items: a ``map`` of ``NoopActivity`` over as many items as make the size (two entries
  an item), 8 in flight; per item, the run's time divided by the items (the small map
  runs up to 20 times, so that its CPU, read in 10 ms ticks, adds up to something).

Beside each latency, the engine's CPU per event: the CPU of every thread of the process
but the bench's own (``/proc/self/task``), over the events. Heartbeats are not in the
history at all (docs/design.md, "Heartbeats and cancellation").

Run: ``.venv/bin/python -m bench.history [--small 100] [--large 10000] [--rounds 200]``
(about five minutes on 2 busy cores; ``--quick``: 2,000 and 50). Prints JSON; ``--out
FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.proc import thread_cpu_s
from flow.loops import poll_until
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env

WAITER = {"name": "Waiter", "activities": [{"id": "gate", "wait_for": "never"}]}
MAPPED = {
    "name": "Mapped",
    "activities": [{"name": "NoopActivity", "id": "each", "map": {"over": "input.items", "max_concurrency": 8}}],
}
#: Idle time after which the cold series' actors stop, and how long it waits before each signal.
COLD_IDLE_S, COLD_WAIT_S = 0.1, 0.35
#: History entries of a map per item (its schedule and its result; a start is quiet).
ENTRIES_PER_ITEM = 2


def _count(flow: EmbeddedFlow, workflow_id: str) -> int:
    db = flow.runtime.store.database
    return int(
        db.execute_sql(f"SELECT count(*) FROM events WHERE workflow_id = {db.param}", (workflow_id,)).fetchone()[0]
    )


def _status(flow: EmbeddedFlow, workflow_id: str) -> str:
    db = flow.runtime.store.database
    return str(db.execute_sql(f"SELECT status FROM workflows WHERE id = {db.param}", (workflow_id,)).fetchone()[0])


def _last(flow: EmbeddedFlow, workflow_id: str) -> int:
    db = flow.runtime.store.database
    row = db.execute_sql(f"SELECT max(id) FROM events WHERE workflow_id = {db.param}", (workflow_id,)).fetchone()
    return int(row[0] or 0)


def _others_cpu_s() -> float:
    """CPU of every thread of this process but the calling one (the bench's driver)."""
    me = threading.get_native_id()
    return sum(cpu for tid, cpu in thread_cpu_s().items() if tid != me)


def _filled(flow: EmbeddedFlow, entries: int) -> str:
    """A waiting workflow whose history holds at least ``entries`` entries (signals sent in bulk)."""
    workflow_id = flow.start("Waiter")
    poll_until(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Waiting", timeout_s=30)
    missing = max(0, entries - _count(flow, workflow_id)) // 2
    for i in range(missing):
        flow.runtime.service.signal(workflow_id, "noise", {"n": i}, idempotency_key=f"fill{i}")
    poll_until(lambda: _count(flow, workflow_id) >= entries, timeout_s=600, every_s=0.05)
    return workflow_id


def _one_signal(flow: EmbeddedFlow, workflow_id: str, key: str) -> tuple[float, float]:
    last = _last(flow, workflow_id)
    cpu0, t0 = _others_cpu_s(), time.perf_counter()
    flow.runtime.service.signal(workflow_id, "noise", {"n": key}, idempotency_key=key)
    poll_until(lambda: _last(flow, workflow_id) > last, timeout_s=60, every_s=0.0005)
    return time.perf_counter() - t0, _others_cpu_s() - cpu0


def signals(flow: EmbeddedFlow, small: int, large: int, rounds: int, *, cold: bool = False) -> dict[str, Any]:
    ids = {small: _filled(flow, small), large: _filled(flow, large)}
    got: dict[int, list[tuple[float, float]]] = {small: [], large: []}
    for i in range(rounds):
        for size in (small, large) if i % 2 else (large, small):
            if cold:
                time.sleep(COLD_WAIT_S)  # the actor stops (idle 0.1 s, swept every 0.05 s)
            got[size].append(_one_signal(flow, ids[size], f"m{i}"))
    # CPU in clock ticks (10 ms) is too coarse for one signal: the sum over the series.
    return {
        str(size): {
            "history": _count(flow, ids[size]),
            "signal_ms_p50": round(statistics.median(x for x, _ in got[size]) * 1000, 3),
            "cpu_us_per_signal": round(sum(c for _, c in got[size]) / len(got[size]) * 1e6, 1),
        }
        for size in (small, large)
    }


def map_items(flow: EmbeddedFlow, small: int, large: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    most = max(1, large // ENTRIES_PER_ITEM)
    for size in (small, large):
        items = max(1, size // ENTRIES_PER_ITEM)
        per_item, cpu = [], []
        # CPU is read in 10 ms ticks: the small map runs often enough to spend a second of it.
        for _ in range(max(2, min(20, most // items))):
            cpu0, t0 = _others_cpu_s(), time.perf_counter()
            workflow_id = flow.start("Mapped", {"items": list(range(items))})
            # Its status alone: reading the whole workflow (5,000 steps) every poll would take
            # the engine's share of the interpreter and make the large map look slower.
            poll_until(lambda w=workflow_id: _status(flow, w) != "In Progress", timeout_s=900, every_s=0.05)
            assert _status(flow, workflow_id) == "Finished"
            per_item.append((time.perf_counter() - t0) / items)
            cpu.append((_others_cpu_s() - cpu0) / items)
        out[str(size)] = {
            "items": items,
            "history": _count(flow, workflow_id),
            "item_ms_p50": round(statistics.median(per_item) * 1000, 3),
            "cpu_us_per_item": round(statistics.median(cpu) * 1e6, 1),
        }
    return out


def _ratios(report: dict[str, Any], small: int, large: int) -> None:
    for case, key in (("signals", "signal_ms_p50"), ("signals_cold", "signal_ms_p50"), ("map_items", "item_ms_p50")):
        for figure in (key, "cpu_us_per_item" if case == "map_items" else "cpu_us_per_signal"):
            a, b = report[case][str(small)][figure], report[case][str(large)][figure]
            report[case][f"{figure}_ratio"] = round(b / a, 2) if a else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=200, help="signals per size (half as many cold)")
    parser.add_argument("--quick", action="store_true", help="2,000 entries and 50 rounds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.rounds = 2_000, 50
    report: dict[str, Any] = {"small": args.small, "large": args.large, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "defs").mkdir()
        env = embedded_env(base, base / "defs", FLOW_ACTIVITY_PACKAGES="activities", FLOW_LOG_LEVEL="WARNING")
        with EmbeddedFlow(Settings.from_env(env, embedded=True)) as flow:
            flow.runtime.service.register(WAITER)
            flow.runtime.service.register(MAPPED)
            report["signals"] = signals(flow, args.small, args.large, args.rounds)
            report["map_items"] = map_items(flow, args.small, args.large)
        (base / "cold").mkdir()
        env = {
            **env,
            "FLOW_DATABASE_URL": f"sqlite:///{base / 'cold' / 'flow.db'}",
            "FLOW_ACTOR_IDLE_S": str(COLD_IDLE_S),
        }
        with EmbeddedFlow(Settings.from_env(env, embedded=True)) as flow:
            flow.runtime.service.register(WAITER)
            report["signals_cold"] = signals(flow, args.small, args.large, max(10, args.rounds // 2), cold=True)
    _ratios(report, args.small, args.large)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    print()
