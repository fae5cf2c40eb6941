"""The engine's batch loop (:class:`flow.engine.batches.BatchRunner`) against an
in-memory table and controls: a page is recorded before any control is sent, what a
pass could not settle is sent first by the next one (and, the control being tied to the
run, changes nothing twice), a control refused for good is failed with its reason, a
lost partition writes nothing, a cancelled batch skips the rest, and the pace holds."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from flow.core.batches import BatchOperation, BatchStatus, Counts, Outcome, Page
from flow.core.workflow_filter import WorkflowFilter
from flow.engine.batches import FAILED_TURN_PAUSE_S, BatchRunner
from flow.errors import FilterTooCostly, InvalidInput, StoreUnavailable
from flow.persistence.batches import Fence, Item, StoredBatch
from flow.persistence.mapping import StoredWorkflow

T0 = datetime(2026, 12, 7, 9, 0, 0)
FENCE = Fence(partition=3, owner="engine-a", epoch=7)


@dataclass
class Workflow:
    """What the fake controls know of a workflow: its run, and how many retries the engine applied."""

    id: str
    created_at: datetime
    run: int = 1
    retries: int = 0


@dataclass
class FakeTable:
    """The store's side of batches, in memory, with the same contract as BatchTable."""

    workflows: list[Workflow]
    batch: StoredBatch
    items: dict[str, Item] = field(default_factory=dict)
    held: bool = True
    writes: int = 0

    def live(self, partitions: set[int]) -> list[StoredBatch]:
        alive = self.batch.partition in partitions and not self.batch.status.ended
        return [self.batch] if alive else []

    def pending(self, batch_id: str, limit: int) -> list[Item]:
        return sorted((i for i in self.items.values() if i.outcome is Outcome.PENDING), key=lambda i: i.workflow_id)[
            :limit
        ]

    def page(self, batch: StoredBatch, limit: int) -> tuple[Page, list[StoredWorkflow]]:
        after = [w for w in self.workflows if batch.cursor is None or (w.created_at, w.id) > batch.cursor][:limit]
        page = Page(tuple((w.created_at, w.id) for w in after), limit)
        return page, [_stored(w) for w in after]

    def record_page(self, batch: StoredBatch, items: list[Item], page: Page, *, fence: Fence, now: datetime) -> bool:
        if not self.held or self.batch.status is not BatchStatus.RUNNING:
            return False
        self.writes += 1
        new = [i for i in items if i.workflow_id not in self.items]
        self.items.update((i.workflow_id, i) for i in new)
        counts = self.batch.counts
        skipped = sum(1 for i in new if i.outcome is Outcome.SKIPPED)
        self.batch = replace(
            self.batch,
            counts=replace(counts, matched=counts.matched + len(new), skipped=counts.skipped + skipped),
            cursor=page.cursor or self.batch.cursor,
            exhausted=page.last,
        )
        return True

    def settle(self, batch: StoredBatch, settled: list[Item], *, fence: Fence, now: datetime) -> bool:
        if not self.held:
            return False
        self.writes += 1
        outcomes = {}
        for item in settled:
            if self.items[item.workflow_id].outcome is Outcome.PENDING:
                self.items[item.workflow_id] = item
                outcomes[item.workflow_id] = item.outcome
        counts = self.batch.counts.settled(outcomes)
        status = self.batch.status
        if status is BatchStatus.CANCELLING:
            rest = [i for i in self.items.values() if i.outcome is Outcome.PENDING]
            for i in rest:
                self.items[i.workflow_id] = replace(i, outcome=Outcome.SKIPPED, reason="the batch was cancelled")
            counts, status = replace(counts, skipped=counts.skipped + len(rest)), BatchStatus.CANCELLED
        elif self.batch.exhausted and counts.pending == 0:
            status = BatchStatus.FINISHED
        self.batch = replace(self.batch, counts=counts, status=status)
        return True


@dataclass(frozen=True)
class _State:
    id: str
    run: int
    created_at: datetime


@dataclass(frozen=True)
class _Row:
    """Just what the runner and the fake controls read of a matched workflow."""

    state: _State


def _stored(w: Workflow) -> StoredWorkflow:
    return cast(StoredWorkflow, _Row(_State(w.id, w.run, w.created_at)))


@dataclass
class FakeControls:
    """Retry, tied to the run as the real controls are: the engine ignores a retry of a
    run that already started. ``lose_record_after`` makes the Nth send raise after it
    went out (the database lost while recording it)."""

    workflows: dict[str, Workflow]
    lose_record_after: int | None = None
    refuse: frozenset[str] = frozenset()
    sends: int = 0

    def qualify(self, batch: StoredBatch, workflow: StoredWorkflow) -> str | None:
        return "a child: its parent retries it" if workflow.state.id.startswith("child") else None

    def apply(self, batch: StoredBatch, item: Item) -> Item:
        w = self.workflows[item.workflow_id]
        if item.workflow_id in self.refuse:
            raise InvalidInput("$.from", f"workflow {item.workflow_id} has no step 'ship'")
        if w.run > item.run:
            return replace(item, outcome=Outcome.DONE, reason=f"on run {w.run} already")
        self.sends += 1
        if w.run == item.run:  # the engine applies "retry as run n+1" once
            w.run, w.retries = item.run + 1, w.retries + 1
        if self.sends == self.lose_record_after:
            raise StoreUnavailable("database unavailable: lost after the send")
        return replace(item, outcome=Outcome.DONE)


def setup(count: int, **controls: object) -> tuple[FakeTable, FakeControls, BatchRunner, list[datetime]]:
    workflows = [Workflow(f"w{n:03}", T0 + timedelta(seconds=n // 2)) for n in range(count)]
    batch = StoredBatch(
        id="b1",
        partition=FENCE.partition,
        operation=BatchOperation.RETRY,
        filter=WorkflowFilter(status="Failed"),
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
    table = FakeTable(workflows, batch)
    fake_controls = FakeControls({w.id: w for w in workflows}, **controls)  # type: ignore[arg-type]
    now = [T0 + timedelta(hours=1)]
    runner = BatchRunner(
        table,  # type: ignore[arg-type]
        fake_controls,
        held=lambda: {FENCE.partition},
        fence_of=lambda partition: FENCE if partition == FENCE.partition else None,
        rate_per_s=10,
        poll_s=0.2,
        clock=lambda: now[0],
    )
    return table, fake_controls, runner, now


def run_until_ended(runner: BatchRunner, table: FakeTable, now: list[datetime], *, passes: int = 500) -> int:
    for n in range(passes):
        if table.batch.status.ended:
            return n
        now[0] += timedelta(seconds=0.2)
        runner.sweep()
    raise AssertionError(f"not ended after {passes} passes: {table.batch}")


def test_every_matched_workflow_is_retried_once_at_the_rate():
    table, controls, runner, now = setup(25)
    passes = run_until_ended(runner, table, now)
    assert table.batch.counts == Counts(25, 25, 0, 0) and table.batch.status is BatchStatus.FINISHED
    assert {w.retries for w in table.workflows} == {1}
    # 10 a second, 0.2 s a pass: 2 a pass after the first window (4): at least 11 passes.
    assert passes >= 11


def test_a_send_whose_record_was_lost_is_sent_again_and_changes_nothing_twice():
    table, controls, runner, now = setup(12, lose_record_after=3)
    run_until_ended(runner, table, now)
    assert table.batch.counts == Counts(12, 12, 0, 0)
    assert {w.retries for w in table.workflows} == {1}, [w.retries for w in table.workflows]
    (resent,) = [i for i in table.items.values() if i.reason == "on run 2 already"]
    assert resent.outcome is Outcome.DONE


def test_a_refusal_for_good_is_failed_with_its_reason_and_a_child_is_skipped():
    table, controls, runner, now = setup(6, refuse=frozenset({"w002"}))
    table.workflows.append(Workflow("child-1", T0 + timedelta(seconds=1)))
    controls.workflows["child-1"] = table.workflows[-1]
    table.workflows.sort(key=lambda w: (w.created_at, w.id))
    run_until_ended(runner, table, now)
    assert table.batch.counts == Counts(7, 5, 1, 1)
    assert table.items["w002"].reason == "$.from: workflow w002 has no step 'ship'"
    assert table.items["child-1"].outcome is Outcome.SKIPPED


def test_an_engine_that_lost_the_partition_writes_nothing_and_sends_nothing():
    table, controls, runner, now = setup(6)
    table.held = False
    for _ in range(10):
        now[0] += timedelta(seconds=0.2)
        runner.sweep()
    assert (table.writes, controls.sends, table.items) == (0, 0, {})


def test_a_cancelled_batch_stops_and_skips_what_it_had_not_sent():
    table, controls, runner, now = setup(30)
    for _ in range(4):
        now[0] += timedelta(seconds=0.2)
        runner.sweep()
    sent = controls.sends
    table.batch = replace(table.batch, status=BatchStatus.CANCELLING)
    run_until_ended(runner, table, now)
    assert table.batch.status is BatchStatus.CANCELLED and controls.sends == sent
    counts = table.batch.counts
    assert counts.done == sent and counts.matched == counts.done + counts.skipped


def test_a_batch_whose_pass_fails_is_tried_again_only_after_a_pause():
    """A filter past its query budget (or a bug) is not run again five times a second;
    its failure holds up no other batch (the pass goes on to the next)."""
    table, _, runner, now = setup(3)
    tried = []

    def over_budget(batch: StoredBatch, limit: int) -> tuple[Page, list[StoredWorkflow]]:
        tried.append(now[0])
        raise FilterTooCostly("input", "the listing ran past 5 s", retry_after_s=5)

    table.page = over_budget  # type: ignore[method-assign]
    for _ in range(10):  # two seconds of passes
        runner.sweep()
        now[0] += timedelta(seconds=0.2)
    assert len(tried) == 1
    now[0] += timedelta(seconds=FAILED_TURN_PAUSE_S)
    runner.sweep()
    assert len(tried) == 2
