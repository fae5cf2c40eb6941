"""``python -m bench.soak``: a long soak run under repeated restarts.

For ``--minutes`` (default 30) it keeps a mixed load of workflows running on the
local PostgreSQL and RabbitMQ and, every ``--interval`` seconds (default 20), sends
SIGTERM to one component at random (the engine or a worker); a supervisor restarts
whatever stops, as compose's ``restart: unless-stopped`` would. At the end it checks
the database like the fault suite does: every workflow reached its expected end,
nothing ran or ended twice, nothing is stuck.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from flow.testing import Cluster, ServicesUnavailable, check_services, check_settled, new_database, new_queue_prefix

RETRY = {"retry": {"max_attempts": 3, "initial_delay_ms": 50, "jitter": 0}}

#: The load: sequential, fanned-out, retrying and failing workflows, on the activities
#: that ship with Libero Flow; and how each must end.
DEFINITIONS: dict[str, dict[str, Any]] = {
    "SlowSequence": {
        "name": "SlowSequence",
        "config": RETRY,
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.3}} for _ in range(3)],
    },
    "FanOut": {
        "name": "FanOut",
        "config": RETRY,
        "activities": [
            *({"name": "SleepActivity", "independent": True, "config": {"sleep_s": 0.2}} for _ in range(4)),
            {"name": "EchoActivity"},
        ],
    },
    "Retrying": {
        "name": "Retrying",
        "config": RETRY,
        "activities": [{"name": "FlakyActivity"}, {"name": "NoopActivity"}],
    },
    "Failing": {
        "name": "Failing",
        "config": RETRY,
        "activities": [{"name": "NoopActivity"}, {"name": "FlakyActivity", "config": {"succeed_on_attempt": 9}}],
    },
}
EXPECTED = {"SlowSequence": "Finished", "FanOut": "Finished", "Retrying": "Finished", "Failing": "Failed"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=20, help="seconds between two SIGTERMs")
    args = parser.parse_args()
    try:
        check_services()
    except ServicesUnavailable as e:
        raise SystemExit(f"python -m bench.soak needs the local PostgreSQL and RabbitMQ: {e}") from None
    with new_database() as pg_url, new_queue_prefix() as prefix, tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), pg_url, prefix, DEFINITIONS)
        cluster.start(workers=2)
        started: dict[str, str] = {}
        signals = 0
        deadline = time.monotonic() + args.minutes * 60
        next_signal = time.monotonic() + args.interval
        try:
            while time.monotonic() < deadline:
                started |= cluster.start_batch(list(DEFINITIONS), copies=2)
                if time.monotonic() >= next_signal:
                    name = random.choice([n for n in cluster.supervised if n in cluster.procs.procs])
                    os.killpg(cluster.procs.procs[name].pid, signal.SIGTERM)
                    signals += 1
                    print(f"{time.strftime('%H:%M:%S')} SIGTERM {name}; {len(started)} workflows so far", flush=True)
                    next_signal += args.interval
                time.sleep(1)
            figures = check_settled(cluster.pg_url, started, EXPECTED, timeout_s=600)
        finally:
            cluster.stop()
    print(
        f"soak: {args.minutes:g} min, {figures['workflows']} workflows, {signals} SIGTERMs, "
        f"lost {figures['lost']}, stuck {figures['stuck']}, duplicated {figures['duplicated']}"
    )


if __name__ == "__main__":
    main()
