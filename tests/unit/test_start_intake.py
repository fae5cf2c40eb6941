"""The API's intake of starts (flow/service/intake.py): a bounded count of starts in
flight per process, and a bound on the engines' backlog, read at most once a period by
one thread, with this process's own stores counted at once."""

from __future__ import annotations

import contextlib
import threading

import pytest

from flow.errors import StartBacklogFull, StoreUnavailable, TooManyStarts
from flow.service.intake import BACKLOG_RETRY_AFTER_S, BUSY_RETRY_AFTER_S, StartIntake


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Backlog:
    """The database's count of unstarted workflows, as the intake reads it."""

    def __init__(self, unstarted: int = 0) -> None:
        self.unstarted = unstarted
        self.reads: list[int] = []

    def __call__(self, at_most: int) -> int:
        self.reads.append(at_most)
        return min(self.unstarted, at_most)


def intake(backlog: Backlog, clock: Clock, *, max_in_flight: int = 2, max_backlog: int = 5) -> StartIntake:
    return StartIntake(backlog, max_in_flight=max_in_flight, max_backlog=max_backlog, ttl_s=0.5, clock=clock)


def test_one_start_more_than_the_slots_is_refused_at_once_and_a_slot_given_back_serves_the_next():
    gate = intake(Backlog(), Clock(), max_in_flight=2)
    with contextlib.ExitStack() as held:
        held.enter_context(gate.admit())
        held.enter_context(gate.admit())
        with pytest.raises(TooManyStarts) as refused, gate.admit():
            pass
        assert refused.value.retry_after_s == BUSY_RETRY_AFTER_S
        assert "FLOW_MAX_STARTS_IN_FLIGHT" in str(refused.value)
    with gate.admit(), gate.admit():  # both slots free again
        pass


def test_a_start_that_fails_gives_its_slot_back():
    gate = intake(Backlog(), Clock(), max_in_flight=1)
    with pytest.raises(StoreUnavailable), gate.admit():
        raise StoreUnavailable("down")
    with gate.admit():
        pass


def test_the_backlog_at_its_bound_refuses_and_gives_the_slot_back():
    backlog, clock = Backlog(unstarted=5), Clock()
    gate = intake(backlog, clock, max_in_flight=1, max_backlog=5)
    with pytest.raises(StartBacklogFull) as refused, gate.admit():
        pass
    assert refused.value.retry_after_s == BACKLOG_RETRY_AFTER_S
    assert "5 workflows wait" in str(refused.value) and "FLOW_MAX_START_BACKLOG" in str(refused.value)
    assert backlog.reads == [5]  # the walk stops at the bound
    backlog.unstarted = 4
    clock.now += 0.5
    with gate.admit():  # the slot was given back, and the engines caught up
        pass


def test_the_count_is_read_once_a_period_and_this_process_stores_count_at_once():
    backlog, clock = Backlog(unstarted=3), Clock()
    gate = intake(backlog, clock, max_backlog=5)
    for _ in range(2):
        with gate.admit():
            gate.stored()
    assert backlog.reads == [5]  # once, for both
    assert gate.backlog() == 5
    with pytest.raises(StartBacklogFull), gate.admit():
        pass
    # A period later the count is read again, and it holds what was stored: not counted twice.
    backlog.unstarted = 5 - 3  # the engines started three of the five
    clock.now += 0.5
    assert gate.backlog() == 2
    assert len(backlog.reads) == 2


def test_one_thread_reads_the_count_while_the_others_use_the_last_one():
    clock = Clock()
    reading, release = threading.Event(), threading.Event()
    reads: list[int] = []

    def slow_count(at_most: int) -> int:
        reads.append(at_most)
        reading.set()
        assert release.wait(10)
        return 4

    gate = StartIntake(slow_count, max_in_flight=4, max_backlog=5, ttl_s=0.5, clock=clock)
    reader = threading.Thread(target=gate.backlog)
    reader.start()
    assert reading.wait(10)
    assert gate.backlog() == 0  # the last count (none yet): no second read, no wait
    release.set()
    reader.join(10)
    assert gate.backlog() == 4
    assert len(reads) == 1


def test_a_failed_read_is_the_callers_error_and_the_next_start_reads_again():
    clock = Clock()
    answers: list[int | Exception] = [StoreUnavailable("down"), 1]

    def count(at_most: int) -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gate = StartIntake(count, max_in_flight=1, max_backlog=5, ttl_s=0.5, clock=clock)
    with pytest.raises(StoreUnavailable), gate.admit():
        pass
    with gate.admit():  # read again at once (the failed read set no time), and the slot is free
        pass
    assert gate.backlog() == 1 and not answers
