"""The bench's arithmetic and its reading of ``/proc``: pure helpers, tested in the fast
tier (``tests/unit/test_bench_helpers.py``) so that a figure in a table is not the
product of an untested percentile.

- :func:`stat_cpu_ticks`: user + system ticks from one ``/proc/<pid>/stat`` line (the
  command name may hold spaces and parentheses: fields are counted after the last ``)``).
- :func:`cpu_s` / :func:`thread_cpu_s`: a process's CPU, each thread's CPU of this one.
- :func:`percentile`: nearest-rank, as the tables have always given p50 / p95 / p99.
- :func:`knee`: the first offered rate at which the system stops keeping up, or its
  latency turns up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def stat_cpu_ticks(line: str) -> int:
    """utime + stime (fields 14 and 15 of ``proc(5)``) of one ``/proc/<pid>/stat`` line."""
    fields = line.rsplit(")", 1)[1].split()
    # After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return int(fields[11]) + int(fields[12])


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it is gone."""
    try:
        return stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_cpu_s(pid: int | None = None) -> dict[int, float]:
    """CPU seconds of each live thread of ``pid`` (default: this process), by thread id."""
    base = Path(f"/proc/{pid or os.getpid()}/task")
    out: dict[int, float] = {}
    for task in base.iterdir():
        try:
            out[int(task.name)] = stat_cpu_ticks((task / "stat").read_text()) / TICK
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; raises on none."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered))))]


def knee(points: Sequence[tuple[float, float, float]], *, keep_up: float = 0.95, turn: float = 2.0) -> float | None:
    """The first offered rate where the system no longer keeps up, from ``(offered rate,
    achieved rate, latency)`` points in increasing offered rate: achieved below
    ``keep_up`` × offered, or latency above ``turn`` × the latency at the lowest rate.
    None when every rate was kept up with."""
    if not points:
        return None
    ordered = sorted(points)
    base = ordered[0][2]
    for offered, achieved, latency in ordered:
        if achieved < keep_up * offered or (base > 0 and latency > turn * base):
            return offered
    return None


__all__ = ["TICK", "cpu_s", "knee", "percentile", "stat_cpu_ticks", "thread_cpu_s"]
