"""The group committer: batches what arrives while a commit is in flight, settles after the
commit and before anyone resumes, isolates the transition whose data breaks a batch."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import peewee
import pytest

from flow.engine.committer import GroupCommitter, Outcome
from flow.errors import StoreUnavailable
from flow.persistence.records import BatchResult


@dataclass
class FakeTransition:
    workflow_id: str
    refuse: str | None = None
    poison: bool = False


@dataclass
class FakeStore:
    """Commits batches; the first one waits until released, so the next batch gathers."""

    batches: list[list[str]] = field(default_factory=list)
    hold_first: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def commit_batch(self, batch, *, owner):
        self.entered.set()
        if not self.batches:
            self.hold_first.wait(5)
        if self.error is not None:
            raise self.error
        if any(t.poison for t in batch):
            raise peewee.DataError("invalid byte sequence for encoding UTF8: 0x00")
        self.batches.append([t.workflow_id for t in batch])
        committed = [i for i, t in enumerate(batch) if t.refuse is None]
        return BatchResult(committed, {i: t.refuse for i, t in enumerate(batch) if t.refuse})


def in_thread(c: GroupCommitter, transition: FakeTransition):
    """Submit from another thread: with nothing committing, a submit commits inline and
    returns only when done (here: when the fake store lets its first commit go)."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("future", c.submit(transition)))
    thread.start()

    class Pending:
        def result(self, timeout: float):
            thread.join(timeout)
            return box["future"].result(timeout)

    return Pending()


def committer(store: FakeStore, **kwargs):
    settled: list[list[str]] = []
    refused: list[tuple[str, str]] = []
    c = GroupCommitter(
        store,  # type: ignore[arg-type]
        owner="me",
        on_committed=lambda ts: settled.append([t.workflow_id for t in ts]),
        on_refused=lambda pairs: refused.extend((t.workflow_id, why) for t, why in pairs),
        **kwargs,
    )
    c.start()
    return c, settled, refused


def test_a_transition_is_committed_at_once_in_the_caller_s_thread_when_nothing_else_commits():
    store = FakeStore()
    store.hold_first.set()
    committed_in: list[str] = []
    c = GroupCommitter(
        store,  # type: ignore[arg-type]
        owner="me",
        on_committed=lambda ts: committed_in.append(threading.current_thread().name),
    )
    c.start()
    assert c.submit(FakeTransition("a")).result(5) == Outcome(True)
    assert committed_in == [threading.current_thread().name]
    c.stop()


def test_what_arrives_while_a_commit_is_in_flight_is_committed_together():
    store = FakeStore()
    c, settled, _ = committer(store)
    first = in_thread(c, FakeTransition("a"))
    assert store.entered.wait(5)
    rest = [c.submit(FakeTransition(x)) for x in "bcd"]
    store.hold_first.set()
    assert [f.result(5) for f in (first, *rest)] == [Outcome(True)] * 4
    assert store.batches == [["a"], ["b", "c", "d"]]
    assert settled == [["a"], ["b", "c", "d"]]
    c.stop()


def test_a_batch_is_settled_before_any_of_its_actors_resumes():
    store = FakeStore()
    store.hold_first.set()
    order: list[str] = []
    c = GroupCommitter(store, owner="me", on_committed=lambda ts: order.append("settled"))  # type: ignore[arg-type]
    c.start()
    future = c.submit(FakeTransition("a"))
    future.add_done_callback(lambda f: order.append("resumed"))
    future.result(5)
    assert order == ["settled", "resumed"]
    c.stop()


def test_refused_transitions_say_why_and_are_handed_back():
    store = FakeStore()
    store.hold_first.set()
    c, settled, refused = committer(store)
    ok, fenced, changed = (
        c.submit(FakeTransition(x, refuse=r)) for x, r in (("a", None), ("b", "fenced"), ("c", "version"))
    )
    assert ok.result(5) == Outcome(True)
    assert fenced.result(5) == Outcome(False, "fenced")
    assert changed.result(5) == Outcome(False, "version")
    c.stop()
    assert refused == [("b", "fenced"), ("c", "version")]


def test_a_database_outage_fails_the_whole_batch_for_its_actors_to_retry():
    store = FakeStore(error=StoreUnavailable("database unavailable"))
    store.hold_first.set()
    c, settled, _ = committer(store)
    future = c.submit(FakeTransition("a"))
    with pytest.raises(StoreUnavailable):
        future.result(5)
    assert settled == []
    c.stop()


def test_one_transition_whose_data_the_database_refuses_fails_alone():
    store = FakeStore()
    c, settled, _ = committer(store)
    first = c.submit(FakeTransition("a"))
    assert store.entered.wait(5)
    good, bad, other = (
        c.submit(FakeTransition("b")),
        c.submit(FakeTransition("x", poison=True)),
        c.submit(FakeTransition("c")),
    )
    store.hold_first.set()
    assert first.result(5) == good.result(5) == other.result(5) == Outcome(True)
    with pytest.raises(peewee.DataError):
        bad.result(5)
    assert store.batches == [["a"], ["b"], ["c"]]
    c.stop()


def test_batches_are_bounded():
    store = FakeStore()
    c, _, _ = committer(store, max_batch=2)
    first = in_thread(c, FakeTransition("a"))
    assert store.entered.wait(5)
    rest = [c.submit(FakeTransition(x)) for x in "bcde"]
    store.hold_first.set()
    for f in (first, *rest):
        f.result(5)
    assert store.batches == [["a"], ["b", "c"], ["d", "e"]]
    c.stop()


def test_after_stop_nothing_is_accepted():
    store = FakeStore()
    store.hold_first.set()
    c, _, _ = committer(store)
    c.stop()
    with pytest.raises(StoreUnavailable):
        c.submit(FakeTransition("a")).result(1)
