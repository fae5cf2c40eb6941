"""Slow clients against the API as deployed (gunicorn with ``api/gunicorn_conf.py``):
clients that send half a body, or their headers a byte at a time, must not delay
anyone else, and are cut off once their request is overdue."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from api.serving import IDLE_READ_TIMEOUT_S, REQUEST_READ_TIMEOUT_S
from flow.testing import Processes, free_port, migrate, new_database, new_queue_prefix, wait_http
from tests.conftest import ROOT, wait_for

HALF_BODY_CLIENTS = 4
TRICKLING_CLIENTS = 4
#: A request from a client that is not slow must be answered within this.
PROMPT_S = 2.0


@pytest.fixture
def api(services, tmp_path) -> Iterator[str]:
    with new_database() as pg_url, new_queue_prefix() as prefix:
        env = {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_DEFINITIONS_DIR": str(ROOT / "workflows"),
            "FLOW_ACTIVITY_PACKAGES": "",
        }
        migrate(env)
        procs = Processes(tmp_path, env)
        port = free_port()
        procs.gunicorn("api", port, workers=2)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health")
            yield url
        finally:
            procs.stop_all()


def half_body_client(url: str) -> socket.socket:
    """Announces a 1,000-byte JSON body, sends 500 bytes of it, and waits."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        b"POST /workflows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b" " * 500
    )
    return sock


class TricklingClient(threading.Thread):
    """Sends a request's headers one byte at a time, a byte every ``every_s`` seconds,
    until the server closes the connection (or ``stop`` is set)."""

    def __init__(self, url: str, every_s: float) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.every_s = every_s
        self.stop = threading.Event()
        self.sent = 0
        self.cut_at: float | None = None

    def run(self) -> None:
        headers = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"y" * 10_000
        for byte in headers:
            if self.stop.wait(self.every_s):
                return
            try:
                self.sock.sendall(bytes([byte]))
                self.sent += 1
            except OSError:  # the server closed the connection
                self.cut_at = time.monotonic()
                return


def closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is open."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    return data if data is not None else b""


def test_slow_clients_stall_no_one_and_are_cut_off(api):
    half_body = [half_body_client(api) for _ in range(HALF_BODY_CLIENTS)]
    sent_at = time.monotonic()
    trickling = [TricklingClient(api, every_s=IDLE_READ_TIMEOUT_S / 4) for _ in range(TRICKLING_CLIENTS)]
    for client in trickling:
        client.start()
    try:
        # Every slow client is being read by the server (its bytes have gone out).
        wait_for(lambda: all(c.sent >= 2 for c in trickling), what="the trickling clients to be sending")
        answered: dict[object, bytes] = {}
        latencies = []
        # While they hang, and while the server cuts them off, everyone else is served promptly.
        while len(answered) < HALF_BODY_CLIENTS or any(c.cut_at is None for c in trickling):
            started = time.monotonic()
            response = requests.get(f"{api}/health", timeout=PROMPT_S)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
            for sock in half_body:
                if sock not in answered and (data := closed_by_server(sock)) is not None:
                    answered[sock] = data
            assert time.monotonic() - sent_at < REQUEST_READ_TIMEOUT_S + 10, "slow clients were never cut off"
            time.sleep(0.1)
        assert max(latencies) < PROMPT_S
        assert len(latencies) > 20  # the probes covered the whole time the slow clients hung
    finally:
        for client in trickling:
            client.stop.set()
            with contextlib.suppress(OSError):
                client.sock.close()
        for sock in half_body:
            sock.close()
    # The half bodies were answered 408 once overdue; the trickling headers were cut
    # off once their request was overdue, while still arriving.
    for data in answered.values():
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
    for client in trickling:
        assert client.cut_at is not None and client.cut_at - sent_at < REQUEST_READ_TIMEOUT_S + 5
