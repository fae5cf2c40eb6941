"""``python -m bench.embedded_waiting``: thousands of workflows waiting on one embedded
flow (SQLite, in-process broker) keep a bounded number of live actors and threads.

Moved from the test suite (``tests/embedded/test_isolation.py`` keeps the same check with
150 workflows): 1,000 starts take minutes on a loaded 2-core machine, which is a load
test's time, not a test's. Needs no service.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from pathlib import Path

from flow.polling import poll_until

from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions

WAITING = {"name": "Waiting", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 30}}]}


def run(waiting: int, max_live_actors: int) -> dict[str, float | int]:
    """Start ``waiting`` workflows whose activity sleeps; once every one has scheduled it,
    the live actors and threads (over the baseline) and how long it took."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        definitions = write_definitions(base / "workflows", {"Waiting": WAITING})
        settings = Settings.from_env(embedded_env(base, definitions), embedded=True)
        settings = dataclasses.replace(settings, max_live_actors=max_live_actors)
        with EmbeddedFlow(settings, worker_threads=4) as flow:
            baseline = threading.active_count()
            began = time.monotonic()
            for _ in range(waiting):
                flow.start("Waiting")
            store = flow.runtime.store

            def scheduled() -> bool:
                counts = store.status_counts()["activities"]
                return counts.get("Scheduled", 0) + counts.get("Started", 0) == waiting

            poll_until(scheduled, timeout_s=1800, every_s=0.5, what=f"{waiting} activities scheduled")
            return {
                "waiting": waiting,
                "max_live_actors": max_live_actors,
                "live_actors": len(flow.engine.actors),
                "threads_over_baseline": threading.active_count() - baseline,
                "seconds": round(time.monotonic() - began, 1),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--max-live-actors", type=int, default=50)
    args = parser.parse_args()
    result = run(args.waiting, args.max_live_actors)
    print(json.dumps(result))
    limit = args.max_live_actors
    bounded = result["live_actors"] <= limit and result["threads_over_baseline"] <= limit + 5
    raise SystemExit(0 if bounded else 1)


if __name__ == "__main__":
    main()
