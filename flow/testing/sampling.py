"""A peak sampler: how high a count per key went while something ran, read every 10 ms
in a thread of its own (a limit's holders per key, for tests of concurrency limits); and
the busiest second of a list of start times (for tests of rate limits)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta


class PeakSampler:
    """``with PeakSampler(read) as sampled:`` calls ``read()`` (``{key: count}``) every
    ``every_s`` until the block ends; ``sampled.peak`` is each key's highest count and
    ``sampled.samples`` how many reads there were."""

    def __init__(self, read: Callable[[], Mapping[str, int]], *, every_s: float = 0.01) -> None:
        self.read = read
        self.every_s = every_s
        self.peak: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def __repr__(self) -> str:
        return f"<PeakSampler samples={self.samples} peak={dict(self.peak)}>"

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for key, count in self.read().items():
                self.peak[key] = max(self.peak[key], count)
            self.samples += 1


def busiest_second(times: list[datetime]) -> int:
    """The most of ``times`` within any one second (a rate limit's bound: ``per_s + burst``)."""
    return max((sum(1 for t in times if first <= t < first + timedelta(seconds=1)) for first in times), default=0)
