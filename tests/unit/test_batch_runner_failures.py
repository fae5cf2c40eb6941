"""An engine's batch thread (flow/engine/batches.py) over a fake batch table: one batch
whose pass fails every time (a filter past its query budget, a bug) neither starves the
batches after it nor is tried again at every pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flow.core.batches import BatchOperation, BatchStatus, Counts, Outcome, Page
from flow.core.workflow_filter import WorkflowFilter
from flow.engine.batches import BatchRunner
from flow.errors import FilterTooCostly
from flow.persistence.batches import Fence, Item, StoredBatch

T0 = datetime(2026, 12, 7, 9, 0, 0)


def stored(batch_id: str) -> StoredBatch:
    return StoredBatch(
        id=batch_id,
        partition=0,
        operation=BatchOperation.RETRY,
        filter=WorkflowFilter(),
        rerun=None,
        status=BatchStatus.RUNNING,
        counts=Counts(),
        cursor=None,
        exhausted=False,
        created_by=None,
        created_at=T0,
        updated_at=T0,
        finished_at=None,
    )


class Table:
    """Two live batches: ``costly`` (oldest: its page runs past the budget every time)
    and ``fine``, which matches three workflows."""

    def __init__(self) -> None:
        self.batches = {"costly": stored("costly"), "fine": stored("fine")}
        self.pages_asked: list[str] = []
        self.settled: list[Item] = []

    def live(self, partitions):
        return [b for b in self.batches.values() if not b.status.ended]

    def pending(self, batch_id, limit):
        return []

    def page(self, batch, limit):
        self.pages_asked.append(batch.id)
        if batch.id == "costly":
            raise FilterTooCostly("input", "the listing ran past 5 s", retry_after_s=5)
        keys = tuple((T0, f"w{n}") for n in range(3))
        return Page(keys, limit), [FakeWorkflow(k[1]) for k in keys]

    def record_page(self, batch, items, page, *, fence, now):
        self.batches[batch.id] = replace(batch, exhausted=page.last)
        return True

    def settle(self, batch, settled, *, fence, now):
        self.settled.extend(settled)
        return True


class FakeWorkflow:
    def __init__(self, workflow_id: str) -> None:
        self.state = type("State", (), {"id": workflow_id, "run": 1})()


class Controls:
    def qualify(self, batch, workflow):
        return None

    def apply(self, batch, item):
        return replace(item, outcome=Outcome.DONE)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def runner(table: Table, clock: Clock) -> BatchRunner:
    return BatchRunner(
        table,  # type: ignore[arg-type]
        Controls(),
        held=lambda: {0},
        fence_of=lambda partition: Fence(partition, "engine", 1),
        rate_per_s=100,
        clock=clock,
    )


def test_a_batch_whose_pass_fails_does_not_starve_the_batches_after_it():
    table, clock = Table(), Clock()
    runner(table, clock).sweep()
    assert table.pages_asked == ["costly", "fine"]
    assert [(i.workflow_id, i.outcome) for i in table.settled] == [(f"w{n}", Outcome.DONE) for n in range(3)]


def test_a_batch_whose_pass_failed_is_tried_again_only_after_a_pause():
    table, clock = Table(), Clock()
    batches = runner(table, clock)
    for _ in range(10):  # two seconds of passes
        batches.sweep()
        clock.now += timedelta(seconds=0.2)
    assert table.pages_asked.count("costly") == 1
    clock.now += timedelta(seconds=10)
    batches.sweep()
    assert table.pages_asked.count("costly") == 2
