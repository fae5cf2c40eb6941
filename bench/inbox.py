"""The inbox bench (issue 28, item 2): what a kept signal costs as the kept ones grow.

One embedded Libero Flow on SQLite (a temporary directory). A workflow ``Inbox`` waits
for the signal ``never``; the bench sends it signals named ``noise``, which no step
waits for, so each one is kept. Two series, each on a fresh workflow: 400 signals of
2.5 KB and 200 of 50 KB. For each signal, the latency from the send (the start
service's ``signal``, as the API calls it) until its history entry is committed. The
p50 (and p95) is given per quarter of the series, so growth with the kept count shows.

Meanwhile a thread runs ``Ten`` workflows (10 ``NoopActivity`` steps) one after the
other; their durations are compared with the same workflow's on an idle engine.

Run: ``.venv/bin/python -m bench.inbox`` (about a minute).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from flow.loops import poll_until
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env

INBOX = {"name": "Inbox", "activities": [{"id": "gate", "wait_for": "never"}]}
TEN = {"name": "Ten", "activities": [{"name": "NoopActivity"} for _ in range(10)]}
SERIES = ((400, 2_500), (200, 50_000))


def _last_event(flow: EmbeddedFlow, workflow_id: str) -> int:
    db = flow.runtime.store.database
    row = db.execute_sql(f"SELECT max(id) FROM events WHERE workflow_id = {db.param}", (workflow_id,)).fetchone()
    return row[0] or 0


def _signal_latencies(flow: EmbeddedFlow, count: int, size: int) -> list[float]:
    workflow_id = flow.start("Inbox")
    poll_until(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Waiting", timeout_s=30)
    payload = {"blob": "x" * (size - 12)}
    latencies = []
    for i in range(count):
        last = _last_event(flow, workflow_id)
        t0 = time.perf_counter()
        flow.runtime.service.signal(workflow_id, "noise", payload, idempotency_key=f"k{i}")
        poll_until(lambda last=last: _last_event(flow, workflow_id) > last, timeout_s=60, every_s=0.0005)
        latencies.append(time.perf_counter() - t0)
    return latencies


def _ten(flow: EmbeddedFlow) -> float:
    t0 = time.perf_counter()
    workflow_id = flow.start("Ten")
    row = flow.wait(workflow_id, timeout_s=120, poll_s=0.005)
    assert row.state.status == "Finished", row.state.status
    return time.perf_counter() - t0


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def main() -> dict:
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "defs").mkdir()
        settings = Settings.from_env(
            embedded_env(base, base / "defs", FLOW_ACTIVITY_PACKAGES="activities"), embedded=True
        )
        with EmbeddedFlow(settings) as flow:
            flow.runtime.service.register(INBOX)
            flow.runtime.service.register(TEN)
            idle = [_ten(flow) for _ in range(10)]
            report["ten_idle_ms_p50"] = float(_ms(idle))
            for count, size in SERIES:
                durations: list[float] = []
                done = threading.Event()

                def unrelated(out: list[float] = durations, stop: threading.Event = done) -> None:
                    while not stop.is_set():
                        out.append(_ten(flow))

                runner = threading.Thread(target=unrelated, daemon=True)
                runner.start()
                t0 = time.perf_counter()
                latencies = _signal_latencies(flow, count, size)
                elapsed = time.perf_counter() - t0
                done.set()
                runner.join()
                quarter = count // 4
                key = f"{count}x{size}"
                report[key] = {
                    "signal_ms_p50_by_quarter": [
                        float(_ms(latencies[q * quarter : (q + 1) * quarter])) for q in range(4)
                    ],
                    "signal_ms_p50": float(_ms(latencies)),
                    "signal_ms_p95": round(sorted(latencies)[int(len(latencies) * 0.95)] * 1000, 1),
                    "series_s": round(elapsed, 1),
                    "ten_ms_p50_meanwhile": float(_ms(durations)) if durations else None,
                    "ten_runs_meanwhile": len(durations),
                }
            db_file = base / "flow.db"
            report["db_bytes_after"] = db_file.stat().st_size + sum(p.stat().st_size for p in base.glob("flow.db-*"))
    return report


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    print()
