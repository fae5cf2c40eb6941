"""Libero Flow alone through the bench's harness: the engine's CPU while idle (ms a second),
then Seq10 at the given in-flight counts with the bench's per-step columns.

    cd <worktree> && PYTHONPATH=. .venv/bin/python bench/results/perf25/engine_cpu.py 1:20,16:160 "" <label>

The first argument is ``inflight:total`` pairs; the second ``inflight:file`` records a
py-spy raw profile of the engine during that level ("" for none).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Bench
from flow.testing import child_pids, new_database, new_queue_prefix

COLUMNS = (
    "engine_cpu_us_per_step",
    "pg_xacts_per_step",
    "pg_rows_written_per_step",
    "pg_wal_bytes_per_step",
    "per_step_ms_p50",
    "steps_per_second",
)


def main() -> None:
    levels = [(int(a), int(b)) for a, b in (x.split(":") for x in sys.argv[1].split(","))]
    spy = sys.argv[2] if len(sys.argv) > 2 else ""
    label = sys.argv[3] if len(sys.argv) > 3 else "run"
    with new_database() as pg, new_queue_prefix() as prefix, tempfile.TemporaryDirectory() as tmp:
        b = Bench(pg, prefix, Path(tmp), True)
        try:
            b.start_flow()
            time.sleep(3)
            c0, t0 = b.cpu_snapshot(), time.time()
            time.sleep(20)
            c1, t1 = b.cpu_snapshot(), time.time()
            idle = round((c1["engine"] - c0["engine"]) * 1000 / (t1 - t0), 2)
            print(label, "idle engine CPU ms/s", idle, flush=True)
            for inflight, total in levels:
                profiler = None
                if spy and str(inflight) == spy.split(":")[0]:
                    [child] = child_pids(b.procs.procs["engine-0"].pid)
                    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", spy.split(":")[1]]
                    command += ["--pid", str(child), "-r", "20", "-f", "raw", "--nonblocking"]
                    profiler = subprocess.Popen(command)
                    time.sleep(2)
                result = b.workflows("Seq10", inflight, total)
                if profiler is not None:
                    profiler.send_signal(2)
                    profiler.wait()
                print(label, inflight, json.dumps({k: result[k] for k in COLUMNS}), flush=True)
        finally:
            b.close()


if __name__ == "__main__":
    main()
