"""The engine's retention pass: only the partitions it holds, batch after batch until a
short one, never past losing a partition; off at 0 days."""

from __future__ import annotations

from datetime import datetime, timedelta

from flow.engine.retention import RetentionSweeper

NOW = datetime(2026, 3, 1, 12, 0)


class FakeStore:
    """Partition -> workflows left to prune; records each call."""

    def __init__(self, left: dict[int, int], *, on_prune=None) -> None:
        self.left = left
        self.calls: list[tuple[int, datetime, int]] = []
        self.on_prune = on_prune

    def prune(self, partition: int, *, finished_before: datetime, limit: int) -> int:
        self.calls.append((partition, finished_before, limit))
        deleted = min(limit, self.left.get(partition, 0))
        self.left[partition] = self.left.get(partition, 0) - deleted
        if self.on_prune:
            self.on_prune(partition)
        return deleted


def sweeper(store: FakeStore, held: set[int], *, days: float = 7) -> RetentionSweeper:
    return RetentionSweeper(store, held=lambda: held, retention_days=days, every_s=60, batch=10, clock=lambda: NOW)


def test_a_pass_prunes_each_held_partition_until_a_batch_comes_back_short():
    store = FakeStore({0: 25, 1: 10, 2: 99})
    sweep = sweeper(store, {0, 1})
    assert sweep.sweep() == 35
    assert [(p, n) for p, _, n in store.calls] == [(0, 10), (0, 10), (0, 10), (1, 10), (1, 10)]
    assert {before for _, before, _ in store.calls} == {NOW - timedelta(days=7)}
    assert store.left[2] == 99  # not ours
    assert sweep.deleted == 35


def test_a_partition_lost_during_a_pass_is_left_to_its_new_owner():
    held = {0, 1}
    store = FakeStore({0: 100, 1: 5}, on_prune=lambda partition: held.discard(0))
    assert sweeper(store, held).sweep() == 10 + 5
    assert store.left[0] == 90


def test_retention_is_off_at_zero_days():
    sweep = sweeper(FakeStore({0: 5}), {0}, days=0)
    assert not sweep.enabled
    sweep.start()  # starts nothing
    assert not sweep._loop.is_alive()
    sweep.stop()
