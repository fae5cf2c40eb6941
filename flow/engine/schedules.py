"""Firing cron schedules: each engine fires the schedules of the partitions it holds
(docs/design.md, "Schedules").

A schedule belongs to ``partition_of(its name)``, so exactly one engine fires it at a
time, the one holding that partition's lease, and the work moves with the partition
on failover, as retention does. Twice a second a pass reads the held partitions' due
schedules and, for each, asks :func:`flow.core.schedules.plan` what to do; it starts
the planned ticks' workflows, records them, then advances the row by
compare-and-set. A tick's workflow id is derived from the schedule and the tick, so
should two engines both fire a tick during a takeover, or an engine die between
starting a tick and recording it, the second start finds the first workflow: each
tick starts exactly one workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from flow.clock import utcnow
from flow.core.schedules import (
    Overlap,
    RunTrigger,
    ScheduleSpec,
    TickPlan,
    plan,
    tick_workflow_id,
    window_ticks,
)
from flow.errors import is_retryable
from flow.loops import BackgroundLoop
from flow.persistence.schedules import ScheduleTable, StoredSchedule

logger = logging.getLogger(__name__)

#: Seconds between passes: a tick starts at most about this late.
POLL_S = 0.5
#: Compare-and-set attempts of one schedule in one pass (another writer came first).
ATTEMPTS = 3


class ScheduleStarter(Protocol):
    """What the engine needs from the starting side to fire schedules."""

    def start_tick(self, spec: ScheduleSpec, workflow_id: str) -> None:
        """Start (or find, when it exists) the workflow ``workflow_id`` of ``spec``."""

    def sync_files(self) -> None:
        """Apply the schedule files of the definitions directory."""


class ScheduleTicker:
    """The schedule thread of one engine (see the module docstring)."""

    def __init__(
        self,
        table: ScheduleTable,
        *,
        held: Callable[[], set[int]],
        starter: ScheduleStarter,
        poll_s: float = POLL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.table = table
        self.held = held
        self.starter = starter
        self.poll_s = poll_s
        self.clock = clock
        #: Workflows this engine's passes started, and passes made (for logs and tests).
        self.started = 0
        self.passes = 0
        self._synced = False
        self._loop = BackgroundLoop("flow-schedules", self._tick, every_s=poll_s)
        self._stopping = self._loop.stopping

    def __repr__(self) -> str:
        return f"<ScheduleTicker every {self.poll_s:g} s, {self.started} started>"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop after the pass in hand."""
        self._loop.stop(30)

    def _tick(self) -> None:
        """One turn of the loop: the schedule files synced once, then a pass."""
        if not self._synced:
            self.starter.sync_files()
            self._synced = True
        self.sweep()

    def sweep(self) -> int:
        """One pass over the held partitions' due schedules; return how many workflows it started."""
        held = self.held()
        now = self.clock()
        count = 0
        for schedule in self.table.due(held, now=now):
            if self._stopping.is_set():
                break
            if schedule.partition in self.held():
                count += self.fire(schedule, now)
        self.started += count
        self.passes += 1
        return count

    def fire(self, schedule: StoredSchedule | None, now: datetime) -> int:
        """Handle one schedule's due ticks; return how many workflows were started."""
        for _ in range(ATTEMPTS):
            if schedule is None or schedule.spec.paused:
                return 0
            outcome = self._pass(schedule, now)
            if outcome is not None:
                return outcome
            schedule = self.table.get(schedule.name)  # another write came first: read it again
        return 0

    def _pass(self, schedule: StoredSchedule, now: datetime) -> int | None:
        spec = schedule.spec
        running = spec.overlap is not Overlap.ALLOW_ALL and self.table.in_progress(schedule.last_workflow_id)
        already: frozenset[datetime] = frozenset()
        if running:
            candidates = window_ticks(spec, last_tick_at=schedule.last_tick_at, now=now)
            if schedule.buffered_tick_at is not None:
                candidates.append(schedule.buffered_tick_at)
            ids = {tick_workflow_id(spec.name, t): t for t in candidates}
            already = frozenset(ids[i] for i in self.table.existing(list(ids)))
        decided = plan(
            spec,
            now=now,
            last_tick_at=schedule.last_tick_at,
            buffered_tick_at=schedule.buffered_tick_at,
            running=running,
            started=already,
        )
        started: list[tuple[datetime, str]] = []
        error = None
        for tick in decided.start:
            workflow_id = tick_workflow_id(spec.name, tick)
            try:
                self.starter.start_tick(spec, workflow_id)
            except Exception as e:
                reason = f"could not start {spec.workflow} for the tick at {tick.isoformat()}Z: {e}"
                if is_retryable(e):
                    # Nothing is advanced: the next pass tries the same ticks again.
                    logger.warning("schedule %s: %s; trying again", spec.name, reason)
                    self.table.record_error(schedule, reason)
                    return len(started)
                # It would fail every time (the definition is gone, the input too large):
                # the tick is recorded as skipped, with the reason.
                logger.error("schedule %s: %s", spec.name, reason)
                error = reason
                decided = _skipped_one(decided, tick)
                continue
            self.table.record_run(spec.name, tick, workflow_id, RunTrigger.CRON, now=now)
            started.append((tick, workflow_id))
        if not self.table.advance(schedule, decided, error=error):
            return None
        if started or decided.skipped:
            logger.info(
                "schedule %s: started %d, skipped %d (missed %d, overlap %d); next tick %s",
                spec.name,
                len(started),
                decided.skipped,
                decided.missed,
                decided.overlapped,
                decided.next_tick_at,
            )
        return len(started)


def _skipped_one(decided: TickPlan, tick: datetime) -> TickPlan:
    """``decided`` with ``tick`` counted as skipped (its start failed) rather than started."""
    latest = tick if decided.last_skipped_at is None else max(decided.last_skipped_at, tick)
    return replace(decided, failed=decided.failed + 1, last_skipped_at=latest)


__all__ = ["ScheduleStarter", "ScheduleTicker"]
