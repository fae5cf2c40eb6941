"""flow.testing.proxy.FaultProxy against a local echo server: each fault does what it
says to the bytes, and heals without a reconnect. Lower bounds only on times (a busy
machine can only make things slower)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from flow.testing.proxy import FaultProxy


@pytest.fixture
def echo() -> Iterator[int]:
    """A threaded echo server on a free local port."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := _recv(conn):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(echo: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo) as proxy:
        yield proxy


def connect(proxy: FaultProxy, timeout_s: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_bytes_pass_unchanged_when_no_fault_is_on(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello") == b"hello"
        assert round_trip(sock, bytes(range(256)) * 1000) == bytes(range(256)) * 1000
    assert proxy.connections == 1


def test_latency_delays_each_way_and_keeps_the_order(proxy):
    proxy.slow(latency_s=0.15, jitter_s=0.05)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock, b"ping") == b"ping"
        # At least (0.15 - 0.05) s each way.
        assert time.monotonic() - started >= 0.2
        payload = b"".join(b"%06d" % i for i in range(5000))
        assert round_trip(sock, payload) == payload


def test_bandwidth_limit_slows_a_large_transfer(proxy):
    proxy.slow(bytes_per_s=400_000)
    with connect(proxy) as sock:
        started = time.monotonic()
        payload = b"x" * 200_000
        assert round_trip(sock, payload) == payload
        # 200 kB each way through two limited pipes: at least about half a second.
        assert time.monotonic() - started >= 0.45


def silent_until_healed(proxy: FaultProxy, sock: socket.socket, payload: bytes) -> None:
    """``payload`` sent on ``sock`` is taken (no error, no RST) and answered only after the heal."""
    sock.sendall(payload)
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(10)
    proxy.heal()
    sock.settimeout(10)
    assert sock.recv(10) == payload


def test_black_hole_holds_bytes_without_a_reset_and_the_heal_lets_them_through(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock, b"before") == b"before"
        proxy.black_hole()
        silent_until_healed(proxy, sock, b"held")


def test_a_new_connection_in_a_black_hole_is_accepted_and_carries_nothing(proxy):
    proxy.black_hole()
    with connect(proxy) as sock:
        silent_until_healed(proxy, sock, b"hello")


def test_reset_cuts_every_open_connection_with_an_rst(proxy):
    with connect(proxy) as first, connect(proxy) as second:
        assert round_trip(first, b"a") == b"a"
        assert round_trip(second, b"b") == b"b"
        assert proxy.reset() == 2
        for sock in (first, second):
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
                sock.sendall(b"more")
                sock.recv(10)
    with connect(proxy) as sock:  # new connections work at once
        assert round_trip(sock, b"again") == b"again"


def test_reset_on_a_marker_cuts_the_connection_that_sends_it(proxy):
    proxy.reset_on(b"COMMIT")
    with connect(proxy) as sock:
        assert round_trip(sock, b"BEGIN; UPDATE") == b"BEGIN; UPDATE"
        sock.sendall(b"COMMIT")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    with connect(proxy) as sock:  # once only
        assert round_trip(sock, b"COMMIT") == b"COMMIT"
    assert proxy.marker_resets == 1


def test_partition_refuses_new_connections_and_black_holes_open_ones(proxy):
    with connect(proxy) as open_one:
        assert round_trip(open_one, b"x") == b"x"
        proxy.partition()
        with pytest.raises((ConnectionResetError, BrokenPipeError)):  # at connect, or at the first send or read
            with connect(proxy) as refused:
                refused.sendall(b"hello")
                if not refused.recv(10):
                    raise ConnectionResetError("closed")
        silent_until_healed(proxy, open_one, b"held")


def test_in_front_of_a_url_forwards_to_its_host_and_port():
    with FaultProxy.in_front_of("postgresql://postgres@127.0.0.1/flow") as proxy:
        assert proxy.upstream == ("127.0.0.1", 5432)
    with FaultProxy.in_front_of("amqp://guest:guest@localhost:5673/") as proxy:
        assert proxy.upstream == ("localhost", 5673)


def test_url_for_points_a_url_at_the_proxy(proxy):
    assert (
        proxy.url_for("postgresql://postgres@10.0.0.5:5432/flow")
        == f"postgresql://postgres@127.0.0.1:{proxy.port}/flow"
    )
    assert proxy.url_for("amqp://guest:guest@localhost:5672/") == f"amqp://guest:guest@127.0.0.1:{proxy.port}/"


def test_stop_closes_everything(echo):
    proxy = FaultProxy("127.0.0.1", echo)
    proxy.start()
    sock = connect(proxy)
    assert round_trip(sock, b"x") == b"x"
    proxy.stop()
    with contextlib.suppress(OSError):
        assert sock.recv(10) == b""
    sock.close()
