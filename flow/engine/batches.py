"""Driving bulk operations: each engine drives the batches of the partitions it holds
(docs/design.md, "Bulk operations").

A batch belongs to ``partition_of(its id)``, so exactly one engine drives it at a time,
the one holding that partition's lease, and the work moves with the partition on
failover, as schedules do. Five times a second a pass reads the held partitions' live
batches and, for each, handles as many workflows as its rate allows
(:func:`flow.core.batches.pace`):

1. items a previous pass recorded but did not settle (an engine died in between), else
   the next page of matching workflows after the cursor, recorded as items — pending,
   or skipped with the reason — with the cursor moved past them, in one fenced commit;
2. each pending item's control sent (:meth:`BatchControls.apply`);
3. the outcomes recorded and counted in a second fenced commit, which also ends the
   batch when nothing is left (or it was asked to stop).

An item is recorded before its control is sent and settled after: a crash between the
two leaves it pending, and the next owner sends it again, which the control's own
idempotency makes harmless. No workflow is skipped, none is handled twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from flow.clock import utcnow
from flow.core.batches import BatchStatus, Outcome, pace, paced
from flow.errors import is_retryable
from flow.loops import BackgroundLoop
from flow.persistence.batches import BatchTable, Fence, Item, StoredBatch
from flow.persistence.mapping import StoredWorkflow

logger = logging.getLogger(__name__)

#: Seconds between passes.
POLL_S = 0.2
#: Seconds a batch whose turn failed waits before its next turn: a filter past its
#: query budget is not run again five times a second.
FAILED_TURN_PAUSE_S = 5.0


class BatchControls(Protocol):
    """What the engine needs from the starting side to drive batches."""

    def qualify(self, batch: StoredBatch, workflow: StoredWorkflow) -> str | None:
        """Why a matched workflow is skipped, or None when the batch's control applies."""

    def apply(self, batch: StoredBatch, item: Item) -> Item:
        """Send one pending item's control; the item with its outcome."""


class BatchRunner:
    """The batch thread of one engine (see the module docstring)."""

    def __init__(
        self,
        table: BatchTable,
        controls: BatchControls,
        *,
        held: Callable[[], set[int]],
        fence_of: Callable[[int], Fence | None],
        rate_per_s: float,
        poll_s: float = POLL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.table = table
        self.controls = controls
        self.held = held
        self.fence_of = fence_of
        self.rate_per_s = rate_per_s
        self.poll_s = poll_s
        self.clock = clock
        #: Each batch's pacing time (GCRA), kept in memory: an engine that takes a batch
        #: over starts it with one pass's allowance, never a backlog's.
        self._paced: dict[str, datetime] = {}
        #: Controls sent and passes made (for logs and tests).
        self.sent = 0
        self.passes = 0
        self._loop = BackgroundLoop("flow-batches", self.sweep, every_s=poll_s)
        self._stopping = self._loop.stopping

    def __repr__(self) -> str:
        return f"<BatchRunner {self.rate_per_s:g} per s, {self.sent} sent>"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop after the pass in hand."""
        self._loop.stop(30)

    def sweep(self) -> int:
        """One pass over the held partitions' live batches; return the workflows handled."""
        handled = 0
        live = self.table.live(self.held())
        for batch in live:
            if self._stopping.is_set():
                break
            fence = self.fence_of(batch.partition)
            if fence is None:
                continue
            try:
                handled += self.drive(batch, fence)
            except Exception as e:  # one batch's trouble (its filter over budget) holds up no other
                logger.warning("batch %s: a pass failed (%s: %s); trying again later", batch.id, type(e).__name__, e)
                # ... nor repeats its costly query every pass: it waits (a cancel still acts).
                self._paced[batch.id] = self.clock() + timedelta(seconds=FAILED_TURN_PAUSE_S)
        for gone in set(self._paced) - {b.id for b in live}:
            del self._paced[gone]
        self.passes += 1
        return handled

    def drive(self, batch: StoredBatch, fence: Fence) -> int:
        """One turn of one batch; return how many workflows it handled."""
        now = self.clock()
        if batch.status is BatchStatus.CANCELLING:
            self.table.settle(batch, [], fence=fence, now=now)
            logger.info("batch %s cancelled: %s", batch.id, batch.counts)
            return 0
        # Two poll intervals: a pass that ran long (sending a page takes time too) is caught
        # up by the next one, so the rate is reached; an idle batch starts with at most that.
        window_s = max(2 * self.poll_s, 1 / self.rate_per_s)
        allowance = pace(self._paced.get(batch.id), now, rate_per_s=self.rate_per_s, window_s=window_s)
        if allowance.allowed == 0:
            return 0
        items = self.table.pending(batch.id, allowance.allowed)
        handled = len(items)
        if not items and not batch.exhausted:
            page, workflows = self.table.page(batch, allowance.allowed)
            planned = [self._plan(batch, w) for w in workflows]
            if not self.table.record_page(batch, planned, page, fence=fence, now=now):
                return 0  # the partition was lost, or the batch cancelled meanwhile
            items = [i for i in planned if i.outcome is Outcome.PENDING]
            handled = len(planned)
        settled = self._send(batch, items)
        self.table.settle(batch, settled, fence=fence, now=self.clock())
        self._paced[batch.id] = paced(allowance.paced_until, handled, rate_per_s=self.rate_per_s)
        return handled

    def _plan(self, batch: StoredBatch, workflow: StoredWorkflow) -> Item:
        state = workflow.state
        reason = self.controls.qualify(batch, workflow)
        if reason is None:
            return Item(state.id, state.run)
        return Item(state.id, state.run, Outcome.SKIPPED, reason)

    def _send(self, batch: StoredBatch, items: list[Item]) -> list[Item]:
        """Each item's control, until one cannot be sent now (it and those after it stay
        pending for the next pass); the settled items."""
        settled = []
        for item in items:
            if self._stopping.is_set():
                break
            try:
                settled.append(self.controls.apply(batch, item))
            except Exception as e:
                if is_retryable(e):
                    logger.warning("batch %s: %s: %s; trying again", batch.id, item.workflow_id, e)
                    break
                # The same control would fail the same way again: recorded, with why.
                logger.error("batch %s: %s failed: %s", batch.id, item.workflow_id, e)
                settled.append(replace(item, outcome=Outcome.FAILED, reason=str(e)))
        self.sent += sum(1 for i in settled if i.outcome is Outcome.DONE)
        return settled


__all__ = ["BatchControls", "BatchRunner"]
