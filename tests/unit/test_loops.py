"""The one background-loop shape and the one reconnect loop (flow/loops.py), without a
broker: a fake connection factory that fails a given number of times."""

from __future__ import annotations

import threading

import pytest

from flow.loops import BackgroundLoop, Reconnecting
from tests.conftest import wait_for


def test_a_loop_calls_its_step_until_stopped_and_stop_joins_the_thread():
    calls = []
    loop = BackgroundLoop("test-loop", lambda: calls.append(1), every_s=0.001)
    loop.start()
    wait_for(lambda: len(calls) >= 3)
    assert loop.stop(5)
    assert not loop.is_alive()  # joined: no step can run any more


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog):
    calls = []

    def step() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("boom")

    loop = BackgroundLoop("test-failing", step, every_s=0.001)
    loop.start()
    wait_for(lambda: len(calls) >= 4)
    loop.stop(5)
    assert "test-failing: a pass failed (RuntimeError: boom)" in caplog.text
    assert "boom" in caplog.text


def test_stop_ends_a_long_pause_at_once():
    loop = BackgroundLoop("test-pause", lambda: None, every_s=3600)
    loop.start()
    assert loop.is_alive()
    assert loop.stop(5)  # the hour-long wait is the stop event itself
    assert not loop.is_alive()


def test_the_first_pass_comes_after_first_s():
    called = threading.Event()
    loop = BackgroundLoop("test-first", called.set, every_s=3600, first_s=0)
    loop.start()
    assert called.wait(5)
    loop.stop(5)


def test_a_stopped_loop_never_starts():
    loop = BackgroundLoop("test-stopped", lambda: None, every_s=1)
    loop.stop(1)
    loop.start()
    assert not loop.is_alive()


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.interrupted = threading.Event()


class FakeBroker:
    """A connection factory that fails ``failures`` times, then connects; each
    connection consumes until interrupted (or is lost at once, ``lose`` times)."""

    def __init__(self, *, failures: int, lose: int = 0) -> None:
        self.failures = failures
        self.lose = lose
        self.attempts = 0
        self.connections: list[FakeConnection] = []
        self.consuming = threading.Event()
        self.consumer: Reconnecting[FakeConnection] | None = None

    def connect(self) -> FakeConnection:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionRefusedError(f"refused ({self.attempts})")
        connection = FakeConnection(self.attempts)
        self.connections.append(connection)
        return connection

    def consume(self, connection: FakeConnection) -> None:
        assert self.consumer is not None
        self.consumer.connected()
        if self.lose > 0:
            self.lose -= 1
            raise ConnectionResetError("connection lost")
        self.consuming.set()
        connection.interrupted.wait(10)

    def close(self, connection: FakeConnection) -> None:
        connection.closed = True


def reconnecting(broker: FakeBroker, **options) -> Reconnecting[FakeConnection]:
    broker.consumer = Reconnecting(
        "test-consumer",
        connect=broker.connect,
        consume=broker.consume,
        close=broker.close,
        interrupt=lambda connection: connection.interrupted.set(),
        **options,
    )
    return broker.consumer


def test_a_consumer_reconnects_after_failures_then_stops_cleanly():
    broker = FakeBroker(failures=3)
    consumer = reconnecting(broker, pause_s=0.001, max_pause_s=0.004)
    consumer.start()
    assert broker.consuming.wait(10)
    assert broker.attempts == 4 and consumer.losses == 3
    assert consumer.stop(5)
    assert not consumer.is_alive()
    [connection] = broker.connections
    assert connection.interrupted.is_set() and connection.closed


def test_the_pause_doubles_up_to_its_cap_while_connecting_fails():
    broker = FakeBroker(failures=10**6)
    consumer = reconnecting(broker, pause_s=0.001, max_pause_s=0.004)
    consumer.start()
    wait_for(lambda: broker.attempts >= 4)
    consumer.stop(5)
    assert consumer.next_pause_s == pytest.approx(0.004)


def test_a_connection_that_worked_starts_backing_off_from_the_shortest_pause_again():
    broker = FakeBroker(failures=4, lose=1)
    consumer = reconnecting(broker, pause_s=0.001, max_pause_s=1.0)
    consumer.start()
    assert broker.consuming.wait(10)
    consumer.stop(5)
    # Four refusals doubled the pause to 0.016 s; the connection that worked (and was
    # lost) set it back, so the next attempt came after 0.001 s (then 0.002 s is next).
    assert consumer.next_pause_s == pytest.approx(0.002)
    assert broker.attempts == 6 and consumer.losses == 5
    assert all(c.closed for c in broker.connections)


def test_stop_while_connecting_fails_ends_the_backoff_at_once():
    broker = FakeBroker(failures=10**6)
    consumer = reconnecting(broker, pause_s=3600, max_pause_s=3600)
    consumer.start()
    wait_for(lambda: broker.attempts >= 1)
    assert consumer.stop(5)
    assert broker.attempts == 1


def test_the_schedule_tickers_loop_syncs_the_files_once_then_makes_passes():
    from types import SimpleNamespace

    from flow.engine.schedules import ScheduleTicker

    synced = []
    table = SimpleNamespace(due=lambda held, now: [])
    starter = SimpleNamespace(sync_files=lambda: synced.append(1))
    ticker = ScheduleTicker(table, held=lambda: {0}, starter=starter, poll_s=0.001)  # type: ignore[arg-type]
    ticker.start()
    wait_for(lambda: ticker.passes >= 3)
    ticker.stop()
    assert synced == [1]


def test_poll_until_with_max_every_s_doubles_its_pause_up_to_the_cap(monkeypatch):
    import flow.loops

    pauses: list[float] = []
    monkeypatch.setattr(flow.loops.time, "sleep", pauses.append)
    answers = iter([None, None, None, None, None, "ended"])
    assert flow.loops.poll_until(lambda: next(answers), timeout_s=None, every_s=0.05, max_every_s=0.3) == "ended"
    assert pauses == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
