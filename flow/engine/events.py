"""Closing event windows and running owed event starts: each engine does it for the
partitions it holds (docs/design.md, "Event triggers").

A debounce or batch window belongs to ``partition_of(its slot)`` and an owed start to
``partition_of(its workflow id)``, so exactly one engine at a time closes a window or
runs a start, and the work moves with the partition on failover, as schedules do. Four
times a second a pass closes the held partitions' windows whose time has come (each in
one transaction that moves it to the owed starts and starts its workflow), runs the
starts that a door owed and did not run (it died, or the database was away), and now
and then forgets events older than ``FLOW_EVENT_DEDUP_S``. A start names its workflow's
id, so a window closed and started twice (a takeover, an engine killed between the start
and forgetting it) still makes one workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from flow.clock import utcnow
from flow.loops import BackgroundLoop
from flow.persistence.events import EventTable, OwedStart

logger = logging.getLogger(__name__)

#: Seconds between passes: a window's workflow starts at most about this late.
POLL_S = 0.25
#: Passes between two prunings of old events.
PRUNE_EVERY = 240


class EventStarter(Protocol):
    """What the engine needs from the starting side to close windows and start workflows."""

    def close(self, slot: str) -> OwedStart | None:
        """Close the window ``slot`` if its time has come and start its workflow."""

    def run(self, start: OwedStart) -> bool:
        """Start (or find) an owed start's workflow; False: try again later."""


class EventTicker:
    """The event-window thread of one engine (see the module docstring)."""

    def __init__(
        self,
        table: EventTable,
        *,
        held: Callable[[], set[int]],
        starter: EventStarter,
        dedup_s: float,
        poll_s: float = POLL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.table = table
        self.held = held
        self.starter = starter
        self.dedup_s = dedup_s
        self.poll_s = poll_s
        self.clock = clock
        #: Workflows this engine's passes started, and passes made (for logs and tests).
        self.started = 0
        self.passes = 0
        self._loop = BackgroundLoop("flow-events", self.sweep, every_s=poll_s)
        self._stopping = self._loop.stopping

    def __repr__(self) -> str:
        return f"<EventTicker every {self.poll_s:g} s, {self.started} started>"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop after the pass in hand."""
        self._loop.stop(30)

    def sweep(self) -> int:
        """One pass over the held partitions; return how many workflows it started."""
        held = self.held()
        now = self.clock()
        count = 0
        for slot in self.table.due_windows(held, now=now):
            if self._stopping.is_set():
                break
            if self.starter.close(slot) is not None:
                count += 1
        for start in self.table.owed(held, now=now):
            if self._stopping.is_set():
                break
            if self.starter.run(start):
                count += 1
        if self.passes % PRUNE_EVERY == 0:
            pruned = self.table.prune(held, before=now - timedelta(seconds=self.dedup_s))
            if pruned:
                logger.info("forgot %d events received more than %g s ago", pruned, self.dedup_s)
        if count:
            logger.info("event triggers: started %d workflows", count)
        self.started += count
        self.passes += 1
        return count


__all__ = ["EventStarter", "EventTicker"]
