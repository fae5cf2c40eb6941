"""Retention: each engine deletes the workflows of the partitions it holds that ended
more than ``FLOW_RETENTION_DAYS`` ago, a batch at a time (docs/design.md, "Retention").

Off when ``FLOW_RETENTION_DAYS`` is 0 (the default: keep everything). The first pass
runs soon after the engine starts (a process restarted more often than
``FLOW_RETENTION_INTERVAL_S`` still prunes), then one every
``FLOW_RETENTION_INTERVAL_S``. A pass goes partition by partition and stops working
on a partition the moment this engine no longer holds it; two engines that briefly
both prune one (a takeover) delete disjoint rows (``SKIP LOCKED``) or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from flow.clock import utcnow
from flow.loops import BackgroundLoop
from flow.persistence.engine_store import EngineStore
from flow.persistence.retention import BATCH

logger = logging.getLogger(__name__)

#: The first pass waits at most this long after the engine starts (its partitions are
#: taken within a lease period).
FIRST_PASS_S = 60.0


class RetentionSweeper:
    """Prunes the held partitions every ``every_s`` (see the module docstring)."""

    def __init__(
        self,
        store: EngineStore,
        *,
        held: Callable[[], set[int]],
        retention_days: float,
        every_s: float,
        batch: int = BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.held = held
        self.retention = timedelta(days=retention_days)
        self.every_s = every_s
        self.batch = batch
        self.clock = clock
        #: Workflows this engine has deleted (for logs and tests).
        self.deleted = 0
        self._loop = BackgroundLoop("flow-retention", self.sweep, every_s=every_s, first_s=min(every_s, FIRST_PASS_S))
        self._stopping = self._loop.stopping

    def __repr__(self) -> str:
        return f"<RetentionSweeper {self.retention.total_seconds() / 86400:g} days every {self.every_s:g} s>"

    @property
    def enabled(self) -> bool:
        return self.retention > timedelta(0)

    def start(self) -> None:
        """Start the passes in the background, unless retention is off."""
        if self.enabled:
            self._loop.start()

    def stop(self) -> None:
        """Stop after the batch in hand."""
        self._loop.stop(30)

    def sweep(self) -> int:
        """One pass over the held partitions; return how many workflows went."""
        finished_before = self.clock() - self.retention
        total = 0
        for partition in sorted(self.held()):
            while not self._stopping.is_set() and partition in self.held():
                deleted = self.store.prune(partition, finished_before=finished_before, limit=self.batch)
                total += deleted
                self.deleted += deleted
                if deleted < self.batch:
                    break
        if total:
            logger.info("retention: deleted %d workflows that ended before %s", total, finished_before.isoformat())
        return total
