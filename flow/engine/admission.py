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
import time
from collections.abc import Callable
from datetime import datetime

from flow.clock import utcnow
from flow.core.vocabulary import ActivityStatus
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
        #: When the last full pass ran (time.monotonic()).
        self._full_pass_at = 0.0
        #: Limits this engine's commits touched since the last pass.
        self._touched: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Admission every {self.poll_s:g} s granted={self.granted}>"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stopping.set()
        self._wake.set()
        self._loop.stop(5)

    def committed(self, transitions: list[Transition]) -> None:
        """After a commit: wake the loop for the limits whose steps or workflows joined a
        queue or let a slot go."""
        # A step now in flight took its slot (let in at once, or by its grant): nothing to admit for it.
        touched = {
            a.claim.limit
            for t in transitions
            for a in (*t.changed, *t.added)
            if a.claim is not None and not a.status.in_flight
        }
        touched |= {
            t.after.claim.limit
            for t in transitions
            if t.after.claim is not None and (t.after.queued or t.after.status.ended)
        }
        # A run's end gives back the slots of its attempts not yet started (persistence.limits).
        touched |= {
            a.claim.limit
            for t in transitions
            if not t.after.status.open
            for a in t.after.activities
            if a.claim is not None and a.status is ActivityStatus.SCHEDULED
        }
        if touched:
            with self._lock:
                self._touched |= touched
            self._wake.set()

    def _turn(self) -> None:
        wait_s = self.poll_s
        if self._next_at is not None:
            wait_s = min(wait_s, max((self._next_at - utcnow()).total_seconds(), 0.0))
        woken = self._wake.wait(wait_s)
        self._wake.clear()
        if self._loop.stopping.is_set():
            return
        with self._lock:
            touched, self._touched = self._touched, set()
        due = self._next_at is not None and self._next_at <= utcnow()
        if woken and not due and time.monotonic() - self._full_pass_at < self.poll_s:
            # Woken by this engine's own commits: only their limits changed here. What
            # changed elsewhere, a full pass finds at least every poll_s, however busy.
            self.admit(sorted(touched), everything=False)
        else:
            self._full_pass_at = time.monotonic()
            self.admit()

    def admit(self, names: list[str] | None = None, *, everything: bool = True) -> None:
        """One pass (see the module docstring): for ``names``, or every limit something
        waits for; ``everything``: also pick up the grants other engines made for ours."""
        held = self.held()
        next_at: datetime | None = self._next_at if not everything else None
        waiting = self.table.waiting_limits()
        # A limit nothing waits for has nothing to admit: a step that ended, with no waiter behind
        # it, costs one read rather than a locked transaction (which a commit letting a step in at
        # once would queue behind).
        for name in waiting if names is None else [n for n in names if n in waiting]:
            try:
                admitted = self.table.admit(name, utcnow(), partitions=held)
            except Exception as e:  # one limit that cannot be admitted must not stop the others
                logger.warning("admitting for limit %s failed (%s: %s); trying again", name, type(e).__name__, e)
                continue
            self.granted += len(admitted.grants)
            self.timers.arm([g for g in admitted.grants if g.partition in held])
            if admitted.next_at is not None and (next_at is None or admitted.next_at < next_at):
                next_at = admitted.next_at
        # A rate limit's next waiter is let in on time, not at the next poll.
        self._next_at = next_at
        if held and everything:
            self.timers.arm(self.table.granted(sorted(held)))
