"""The ``map`` case: a map of N items against N independent activities in one workflow
(issue 14's target: 1,000 items within 1.5x the time of 1,000 independent activities).

Both run the same no-op activity through the same engine and workers, one workflow at a
time; the map lists its items from the input when its turn comes, so what it adds is
listing them (rows appended in the commit) and scheduling each as the last ends.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.harness import Bench

SIZES = (100, 1000)
#: Target: a map's time over the same number of independent activities.
TARGET = 1.5


def case_map(b: Bench, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    b.start_flow()
    for n in SIZES:
        fanout = [b.workflows(f"Fan{n}", 1, 1, steps=1)["wall_s"] for _ in range(rounds)]
        mapped = [
            b.workflows("Map", 1, 1, steps=1, input_data={"items": list(range(n))})["wall_s"] for _ in range(rounds)
        ]
        out[n] = {"independent_s": median(fanout), "map_s": median(mapped)}
        out[n]["ratio"] = out[n]["map_s"] / out[n]["independent_s"]
    b.stop_all()
    return out


def report(results: dict[str, Any]) -> list[str]:
    """The case's lines in ``bench/results/README.md``."""
    lines = ["## A map against independent activities in one workflow", ""]
    for n, r in results.items():
        verdict = "met" if r["ratio"] <= TARGET else "missed"
        target = f" (target <= {TARGET}x: {verdict})" if int(n) == 1000 else ""
        lines.append(
            f"- {n} items: map {r['map_s']:.3f} s; {n} independent activities {r['independent_s']:.3f} s; "
            f"{r['ratio']:.2f}x{target}"
        )
    return [*lines, ""]
