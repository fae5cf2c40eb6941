"""DelayedCalls: the worker's one timer thread for deferred "started" reports."""

from __future__ import annotations

import threading

from flow.worker.reporting import DelayedCalls
from tests.conftest import wait_for


def test_a_call_runs_once_when_due():
    calls = DelayedCalls()
    ran = []
    calls.schedule(0, lambda: ran.append("a"))
    wait_for(lambda: ran == ["a"], what="the call")


def test_a_call_cancelled_before_it_is_due_never_runs():
    calls = DelayedCalls()
    ran = threading.Event()
    handle = calls.schedule(0.2, ran.set)
    assert calls.cancel(handle) is True
    # A later call that is due after the cancelled one proves the thread went past it.
    later = threading.Event()
    calls.schedule(0.3, later.set)
    wait_for(later.is_set, what="the later call")
    assert not ran.is_set()


def test_cancel_says_false_once_the_call_has_run():
    calls = DelayedCalls()
    ran = threading.Event()
    handle = calls.schedule(0, ran.set)
    wait_for(ran.is_set, what="the call")
    assert calls.cancel(handle) is False


def test_calls_run_in_order_of_due_time_not_of_scheduling():
    calls = DelayedCalls()
    order: list[str] = []
    calls.schedule(1.0, lambda: order.append("late"))
    calls.schedule(0, lambda: order.append("early"))
    wait_for(lambda: len(order) == 2, what="both calls")
    assert order == ["early", "late"]


def test_an_earlier_call_wakes_a_thread_that_sleeps_until_a_later_one():
    calls = DelayedCalls()
    far = calls.schedule(3600, lambda: None)  # the thread now sleeps for an hour
    soon = threading.Event()
    calls.schedule(0, soon.set)
    wait_for(soon.is_set, what="the sooner call to wake the thread")
    assert calls.cancel(far) is True


def test_a_failing_call_is_logged_and_the_next_ones_still_run(caplog):
    calls = DelayedCalls()
    after = threading.Event()
    calls.schedule(0, lambda: 1 / 0)
    calls.schedule(0.05, after.set)
    wait_for(after.is_set, what="the call after the failing one")
    assert "delayed report failed" in caplog.text


def test_calls_scheduled_from_many_threads_each_run_exactly_once():
    calls = DelayedCalls()
    ran: list[int] = []
    lock = threading.Lock()

    def record(n: int) -> None:
        with lock:
            ran.append(n)

    def schedule_many(first: int) -> None:
        for n in range(first, first + 250):
            calls.schedule(0.001 * (n % 7), lambda n=n: record(n))

    threads = [threading.Thread(target=schedule_many, args=(i * 250,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(ran) == 2000, what="every call")
    assert sorted(ran) == list(range(2000))
