"""The unstarted-start pass (``flow/engine/unstarted.py``): a workflow unstarted past the grace
is started by its engine only while its partition queue holds no message ready. A start queued
behind a backlog (a flood from the Dramatiq or AMQP start doors, which no backlog bound sheds)
is not lost: started here, its message arrived later and the start was decided twice."""

from __future__ import annotations

from datetime import datetime

from flow.engine.unstarted import UnstartedStarter


class FakeStore:
    def __init__(self, unstarted: list[str]) -> None:
        self.rows = unstarted
        self.asked: list[datetime] = []

    def unstarted(self, partitions, *, created_before: datetime, limit: int = 500) -> list[str]:
        self.asked.append(created_before)
        return list(self.rows)


def starter(ready: dict[int, int | None]) -> tuple[UnstartedStarter, list[str], list[int]]:
    started: list[str] = []
    asked: list[int] = []

    def ready_in(partition: int) -> int | None:
        asked.append(partition)
        return ready[partition]

    store = FakeStore(["w-1", "w-2"])
    return (
        UnstartedStarter(
            store,  # type: ignore[arg-type]
            lambda workflow_id, partition, item: started.append(workflow_id),
            partitions=1,
            grace_s=30,
            ready=ready_in,
        ),
        started,
        asked,
    )


def test_a_start_older_than_the_grace_is_not_taken_for_lost_while_its_queue_holds_messages():
    unstarted, started, asked = starter({0: 12})
    unstarted({0})
    assert started == [] and asked == [0]  # the queue asked once a pass, not once a workflow


def test_a_start_older_than_the_grace_is_started_once_its_queue_is_drained():
    unstarted, started, _ = starter({0: 0})
    unstarted({0})
    assert started == ["w-1", "w-2"]


def test_a_queue_whose_count_is_unknown_is_judged_by_age_as_before():
    # The in-process broker holds nothing back; an unanswered count must not stall recovery.
    unstarted, started, _ = starter({0: None})
    unstarted({0})
    assert started == ["w-1", "w-2"]


def test_partitions_not_held_are_left_alone():
    unstarted, started, asked = starter({0: 0})
    unstarted(set())
    assert started == [] and asked == []
