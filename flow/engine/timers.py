"""Durable timers, fired by the engine that holds their partition.

A timer is a row (committed with the transition that set it), so it survives every
restart and costs nothing while it waits: no thread, no message held in the broker
(RabbitMQ's consumer timeout would otherwise close a channel holding a delayed
message past 30 minutes). The engine keeps only the timers due within
``horizon_s`` in a heap: those of each partition it acquires are read at
acquisition, the rest by a scan every ``scan_s``, and new ones straight from the
commits that set them. A fired timer becomes a :class:`~flow.core.events.TimerFired`
event for the workflow's actor; the transition that handles it deletes the row,
so a timer whose handling did not commit fires again.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flow.clock import utcnow
from flow.loops import BackgroundLoop
from flow.persistence.engine_store import EngineStore
from flow.persistence.records import TimerRow

logger = logging.getLogger(__name__)


class TimerWheel:
    """The heap of due-soon timers of the held partitions (see the module docstring)."""

    def __init__(
        self,
        store: EngineStore,
        *,
        held: Callable[[], set[int]],
        fire: Callable[[TimerRow], None],
        horizon_s: float = 60.0,
        scan_s: float = 20.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.held = held
        self.fire = fire
        self.horizon = timedelta(seconds=horizon_s)
        self.scan_s = scan_s
        self.clock = clock
        self._heap: list[tuple[datetime, str]] = []
        #: Timers in the heap, by id.
        self._armed: dict[str, TimerRow] = {}
        #: Timers fired whose handling has not committed yet.
        self._firing: set[str] = set()
        self._cv = threading.Condition()
        self._closed = False
        # Each turn waits on the condition until the next timer is due (or the next scan).
        self._loop = BackgroundLoop("flow-timers", self._turn, every_s=0)
        self._next_scan = 0.0

    def __len__(self) -> int:
        return len(self._armed)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stopping.set()  # before the wake-up: the woken turn is the last
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._loop.stop(5)

    # -- from other threads -------------------------------------------------------------

    def arm(self, rows: list[TimerRow]) -> None:
        """Timers just committed (or read): keep those due within the horizon. A timer
        set again with a new due time (a heartbeat moves its timer on) moves; its old
        heap entry is skipped when popped."""
        limit = self.clock() + self.horizon
        with self._cv:
            added = False
            for row in rows:
                armed = self._armed.get(row.id)
                if row.id in self._firing or (armed is not None and armed.due_at == row.due_at):
                    continue
                if row.due_at > limit:
                    self._armed.pop(row.id, None)  # moved past the horizon: the scan finds it
                    continue
                self._armed[row.id] = row
                heapq.heappush(self._heap, (row.due_at, row.id))
                added = True
            if added:
                self._cv.notify()

    def forget(self, ids: list[str]) -> None:
        """Timers whose rows a commit deleted (fired and handled, or cancelled)."""
        with self._cv:
            for timer_id in ids:
                self._armed.pop(timer_id, None)
                self._firing.discard(timer_id)

    def unfired(self, ids: list[str]) -> None:
        """Fired timers whose handling did not commit: the next scan arms them again."""
        with self._cv:
            self._firing.difference_update(ids)

    def load(self, partitions: set[int]) -> None:
        """Arm the due-soon timers of ``partitions`` (just acquired) from the database."""
        self.arm(self.store.timers_due(partitions, before=self.clock() + self.horizon))

    def drop(self, partition: int) -> None:
        """Forget the timers of a partition this engine no longer holds."""
        with self._cv:
            for timer_id in [i for i, row in self._armed.items() if row.partition == partition]:
                del self._armed[timer_id]

    # -- the timer thread ------------------------------------------------------------------

    def _turn(self) -> None:
        """One turn of the timer loop: fire what is due, or wait for it; scan when it is time."""
        due: list[TimerRow] = []
        with self._cv:
            if self._closed:
                return
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                due_at, timer_id = heapq.heappop(self._heap)
                row = self._armed.get(timer_id)
                if row is None or row.due_at != due_at:
                    continue  # forgotten, or moved (its new entry is in the heap)
                del self._armed[timer_id]
                due.append(row)
                self._firing.add(timer_id)
            if not due:
                wait = self.scan_s
                if self._heap:
                    wait = min(wait, max((self._heap[0][0] - now).total_seconds(), 0.0))
                wait = min(wait, max(self._next_scan - time.monotonic(), 0.0))
                if wait > 0:
                    self._cv.wait(wait)
        held = self.held()
        for row in due:
            if row.partition not in held:
                self.unfired([row.id])
                continue
            try:
                self.fire(row)
            except Exception:
                logger.exception("firing timer %s failed; it will fire again", row.id)
                self.unfired([row.id])
        if time.monotonic() >= self._next_scan:
            self._next_scan = time.monotonic() + self.scan_s
            try:
                self.load(self.held())
            except Exception as e:
                logger.warning("timer scan failed (%s); will try again", e)
