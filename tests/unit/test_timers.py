"""The timer wheel: fires due timers of held partitions once, again only if not handled."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from flow.engine.timers import TimerWheel
from flow.persistence.records import TimerRow
from tests.conftest import wait_for

T0 = datetime(2026, 1, 1, 12)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Store:
    def __init__(self, rows: list[TimerRow] = ()) -> None:
        self.rows = list(rows)

    def timers_due(self, partitions, *, before):
        return [r for r in self.rows if r.partition in partitions and r.due_at <= before]


def row(name: str, seconds: float, partition: int = 0) -> TimerRow:
    return TimerRow(name, "wf", partition, "retry", 0, 2, T0 + timedelta(seconds=seconds))


def wheel(store: Store, held: set[int], fired: list, clock: Clock) -> TimerWheel:
    w = TimerWheel(store, held=lambda: held, fire=lambda r: fired.append(r.id), horizon_s=60, scan_s=0.05, clock=clock)  # type: ignore[arg-type]
    w.start()
    return w


def test_a_timer_fires_when_due_and_not_before():
    clock, fired = Clock(), []
    w = wheel(Store(), {0}, fired, clock)
    w.arm([row("t1", 5)])
    threading.Event().wait(0.2)
    assert fired == []
    clock.now = T0 + timedelta(seconds=5)
    wait_for(lambda: fired == ["t1"])
    w.stop()


def test_a_fired_timer_is_not_fired_again_while_its_handling_commits():
    clock, fired = Clock(), []
    store = Store([row("t1", 0)])
    w = wheel(store, {0}, fired, clock)
    wait_for(lambda: fired == ["t1"])
    threading.Event().wait(0.3)  # several scans: the row is still there, the timer is being handled
    assert fired == ["t1"]
    w.unfired(["t1"])  # its transition was refused: the next scan arms it again
    wait_for(lambda: fired == ["t1", "t1"])
    store.rows.clear()
    w.forget(["t1"])
    w.stop()


def test_timers_of_partitions_not_held_do_not_fire_and_come_back_with_the_partition():
    clock, fired = Clock(), []
    held: set[int] = {0}
    store = Store([row("mine", 0, partition=0), row("theirs", 0, partition=1)])
    w = wheel(store, held, fired, clock)
    wait_for(lambda: fired == ["mine"])
    held.add(1)
    w.load({1})
    wait_for(lambda: sorted(fired) == ["mine", "theirs"])
    w.stop()


def test_a_cancelled_timer_never_fires():
    clock, fired = Clock(), []
    w = wheel(Store(), {0}, fired, clock)
    w.arm([row("t1", 1)])
    w.forget(["t1"])
    clock.now = T0 + timedelta(seconds=2)
    threading.Event().wait(0.3)
    assert fired == []
    w.stop()


def test_timers_beyond_the_horizon_wait_in_the_database():
    clock, fired = Clock(), []
    store = Store([row("far", 3600)])
    w = wheel(store, {0}, fired, clock)
    w.arm(store.rows)
    assert len(w) == 0
    clock.now = T0 + timedelta(seconds=3590)  # within the horizon now: the scan arms it
    wait_for(lambda: len(w) == 1)
    clock.now = T0 + timedelta(seconds=3600)
    wait_for(lambda: fired == ["far"])
    w.stop()


def test_a_timer_set_again_with_a_later_due_time_moves():
    # A heartbeat moves its attempt's heartbeat timer on: same id, new due time.
    clock, fired = Clock(), []
    w = wheel(Store(), {0}, fired, clock)
    w.arm([row("beat", 1)])
    w.arm([row("beat", 3)])
    assert len(w) == 1
    clock.now = T0 + timedelta(seconds=2)
    threading.Event().wait(0.3)  # past the first due time: the moved timer does not fire
    assert fired == []
    clock.now = T0 + timedelta(seconds=3)
    wait_for(lambda: fired == ["beat"])
    w.stop()


def test_a_fired_timer_its_handling_set_again_is_armed_again():
    clock, fired = Clock(), []
    w = wheel(Store(), {0}, fired, clock)
    w.arm([row("beat", 0)])
    wait_for(lambda: fired == ["beat"])
    w.forget(["beat"])  # the engine, after the commit that handled it and set it again
    w.arm([row("beat", 5)])
    clock.now = T0 + timedelta(seconds=5)
    wait_for(lambda: fired == ["beat", "beat"])
    w.stop()


def test_a_failing_scan_does_not_stop_the_timers_and_stop_joins_the_thread():
    class FailingOnce(Store):
        scans = 0

        def timers_due(self, partitions, *, before):
            self.scans += 1
            if self.scans == 1:
                raise ConnectionError("database away")
            return super().timers_due(partitions, before=before)

    clock, fired = Clock(), []
    store = FailingOnce([row("t1", 0)])
    w = wheel(store, {0}, fired, clock)
    wait_for(lambda: fired == ["t1"])  # found by the scan after the failed one
    w.stop()
    assert not w._loop.is_alive()
