"""Deferred "started" reports from workers.

A worker reports that it started an attempt only once the attempt has run for
``FLOW_STARTED_REPORT_DELAY_MS``: a quick attempt's result (which carries its start
time) is then the only message, which halves the engine's work for short
activities, as Temporal does by writing an activity's start lazily. Long attempts
are still shown as started, a moment late.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class DelayedCalls:
    """One daemon thread running callbacks when due, unless cancelled first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._calls: dict[int, Callable[[], None]] = {}
        self._counter = itertools.count()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, delay_s: float, call: Callable[[], None]) -> int:
        """Run ``call`` in ``delay_s`` seconds; return a handle for :meth:`cancel`."""
        handle = next(self._counter)
        due = time.monotonic() + delay_s
        with self._cv:
            self._calls[handle] = call
            earliest = not self._heap or due < self._heap[0][0]
            heapq.heappush(self._heap, (due, handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flow-delayed-calls", daemon=True)
                self._thread.start()
            if earliest:
                # Wake the thread only when it must wake sooner than it planned: with a
                # steady stream of attempts it sleeps until the oldest is due, instead of
                # waking (and taking the GIL) for every attempt.
                self._cv.notify()
        return handle

    def cancel(self, handle: int) -> bool:
        """True if the call had not started yet (and now never will)."""
        with self._cv:
            return self._calls.pop(handle, None) is not None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cv.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, handle = heapq.heappop(self._heap)
                call = self._calls.pop(handle, None)
            if call is not None:
                try:
                    call()
                except Exception:  # a lost "started" report costs a progress line, nothing else
                    logger.warning("delayed report failed", exc_info=True)
