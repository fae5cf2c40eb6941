"""The actor registry: one mailbox per workflow, one wake-up per burst, bounded actors."""

from __future__ import annotations

import threading
from typing import Any

import pykka

from actors.registry import DRAIN, Entry, WorkflowActors
from tests.conftest import wait_for


class Recorder(pykka.ThreadingActor):
    """Takes its mailbox when told to; can be made to block until released."""

    use_daemon_thread = True

    def __init__(self, entry: Entry, registry: list[WorkflowActors], taken: list, gate: threading.Event) -> None:
        super().__init__()
        self.entry, self.registry, self.taken, self.gate = entry, registry, taken, gate
        self.wakeups = 0

    def on_receive(self, message: Any) -> None:
        assert message == DRAIN
        while True:
            self.gate.wait(5)
            items = self.registry[0].take(self.entry)
            if not items:
                return
            self.taken.append((self.entry.workflow_id, items))


def registry(**kwargs):
    taken: list = []
    gate = threading.Event()
    gate.set()
    holder: list[WorkflowActors] = []
    actors = WorkflowActors(lambda entry: Recorder.start(entry, holder, taken, gate), **kwargs)
    holder.append(actors)
    return actors, taken, gate


def test_events_that_arrive_while_an_actor_is_busy_are_taken_together():
    actors, taken, gate = registry()
    gate.clear()
    for i in range(5):
        actors.deliver("wf", 0, i)
    gate.set()
    wait_for(lambda: sum(len(items) for _, items in taken) == 5)
    assert [items for _, items in taken] == [[0, 1, 2, 3, 4]]
    actors.stop_all()


def test_an_actor_goes_idle_and_wakes_again_for_the_next_event():
    actors, taken, _ = registry()
    actors.deliver("wf", 0, "a")
    wait_for(lambda: taken == [("wf", ["a"])])
    wait_for(lambda: not actors._entries["wf"].scheduled)
    actors.deliver("wf", 0, "b")
    wait_for(lambda: taken == [("wf", ["a"]), ("wf", ["b"])])
    actors.stop_all()


def test_evicting_a_partition_stops_its_actors_and_returns_what_they_never_took():
    actors, taken, gate = registry()
    actors.deliver("other", 1, "x")
    wait_for(lambda: taken == [("other", ["x"])])
    gate.clear()
    actors.deliver("wf", 0, "first")
    wait_for(lambda: actors._entries["wf"].scheduled)
    actors.deliver("wf", 0, "second")

    result: list = []
    evicting = threading.Thread(target=lambda: result.extend(actors.evict(0)))
    evicting.start()
    gate.set()
    evicting.join(10)
    # The actor was mid-batch: it finished "first" (or had not taken it yet); what it
    # never took comes back, and nothing is lost or taken twice.
    taken_wf = [i for wid, items in taken if wid == "wf" for i in items]
    assert sorted(taken_wf + result) == ["first", "second"]
    assert "wf" not in actors._entries and "other" in actors._entries
    actors.stop_all()


def test_idle_actors_beyond_the_bound_are_stopped():
    actors, taken, _ = registry(max_live=3)
    for i in range(6):
        actors.deliver(f"wf-{i}", 0, i)
        wait_for(lambda i=i: len(taken) == i + 1)
        wait_for(lambda i=i: not actors._entries[f"wf-{i}"].scheduled)
    assert len(actors) <= 4  # the newest is only counted against the bound on the next start
    actors.stop_all()


def test_idle_actors_stop_after_the_idle_time():
    now = [0.0]
    actors, taken, _ = registry(idle_s=10, clock=lambda: now[0])
    actors.deliver("wf", 0, "a")
    wait_for(lambda: taken and not actors._entries["wf"].scheduled)
    assert actors.stop_idle() == 0
    now[0] = 11
    assert actors.stop_idle() == 1
    assert len(actors) == 0
    actors.stop_all()
