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
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.conftest import BATCH, FaultCluster, verify  # noqa: E402
from tests.services import new_database, new_queue_prefix, require_services  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=20, help="seconds between two SIGTERMs")
    args = parser.parse_args()
    require_services()
    with new_database() as pg_url, new_queue_prefix() as prefix, tempfile.TemporaryDirectory() as tmp:
        cluster = FaultCluster(Path(tmp), pg_url, prefix)
        cluster.start(workers=2)
        started: dict[str, str] = {}
        signals = 0
        deadline = time.monotonic() + args.minutes * 60
        next_signal = time.monotonic() + args.interval
        try:
            while time.monotonic() < deadline:
                started |= cluster.start_batch(BATCH, copies=2)
                if time.monotonic() >= next_signal:
                    name = random.choice([n for n in cluster.supervised if n in cluster.procs.procs])
                    os.killpg(cluster.procs.procs[name].pid, signal.SIGTERM)
                    signals += 1
                    print(f"{time.strftime('%H:%M:%S')} SIGTERM {name}; {len(started)} workflows so far", flush=True)
                    next_signal += args.interval
                time.sleep(1)
            figures = verify(cluster, started, timeout_s=600)
        finally:
            cluster.stop()
    print(
        f"soak: {args.minutes:g} min, {figures['workflows']} workflows, {signals} SIGTERMs, "
        f"lost {figures['lost']}, stuck {figures['stuck']}, duplicated {figures['duplicated']}"
    )


if __name__ == "__main__":
    main()
