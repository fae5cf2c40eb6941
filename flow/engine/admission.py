"""Admitting what waits for a concurrency limit (docs/design.md, "Concurrency limits").

Each engine runs one admission loop. A pass admits, for every limit some step waits
for, what may start now (:meth:`flow.persistence.limits.LimitTable.admit`, one
transaction per limit, whichever partitions the waiters are in), arms the grants for
this engine's partitions at once, and picks up the grants other engines made for them.
A commit that queued a step or ended one that held a slot wakes the loop; otherwise it
runs every ``poll_s`` (a slot given back on another engine, a limit raised by the API),
or sooner when a rate limit lets its next waiter in before then.

A grant is a ``slot`` timer row: if this engine dies before the timer fires, the
partition's next owner finds it like any timer. Nothing here holds state that a crash
could lose.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from flow.clock import utcnow
from flow.engine.timers import TimerWheel
from flow.loops import BackgroundLoop
from flow.observability.metrics import EngineMetrics
from flow.persistence.limits import LimitTable
from flow.persistence.records import Transition

logger = logging.getLogger(__name__)


class Admission:
    """The admission loop of one engine (see the module docstring)."""

    def __init__(
        self,
        table: LimitTable,
        timers: TimerWheel,
        *,
        held: Callable[[], set[int]],
        poll_s: float,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.table = table
        self.timers = timers
        self.held = held
        self.poll_s = poll_s
        self.metrics = metrics
        self._wake = threading.Event()
        self._loop = BackgroundLoop("flow-admission", self._turn, every_s=0)
        #: Grants made by this engine so far (for tests and the bench).
        self.granted = 0
        #: When a rate limit lets its next waiter in (None: no waiter waits for time).
        self._next_at: datetime | None = None

    def __repr__(self) -> str:
        return f"<Admission every {self.poll_s:g} s granted={self.granted}>"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stopping.set()
        self._wake.set()
        self._loop.stop(5)

    def committed(self, transitions: list[Transition]) -> None:
        """After a commit: wake the loop if a step or a workflow joined a queue or let a
        slot go."""
        if any(t.after.claim is not None and (t.after.queued or t.after.status.ended) for t in transitions) or any(
            a.claim is not None for t in transitions for a in (*t.changed, *t.added)
        ):
            self._wake.set()

    def _turn(self) -> None:
        wait_s = self.poll_s
        if self._next_at is not None:
            wait_s = min(wait_s, max((self._next_at - utcnow()).total_seconds(), 0.0))
        self._wake.wait(wait_s)
        self._wake.clear()
        if self._loop.stopping.is_set():
            return
        self.admit()

    def admit(self) -> None:
        """One pass (see the module docstring)."""
        held = self.held()
        next_at: datetime | None = None
        for name in self.table.waiting_limits():
            admitted = self.table.admit(name, utcnow())
            self.granted += len(admitted.grants)
            self.timers.arm([g for g in admitted.grants if g.partition in held])
            if admitted.next_at is not None and (next_at is None or admitted.next_at < next_at):
                next_at = admitted.next_at
        # A rate limit's next waiter is let in on time, not at the next poll.
        self._next_at = next_at
        if held:
            self.timers.arm(self.table.granted(sorted(held)))
