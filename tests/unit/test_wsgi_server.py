"""``flow up``'s HTTP server takes a burst of connections as gunicorn does: its listen
backlog is gunicorn's (2048), not ``socketserver``'s 5."""

from __future__ import annotations

import select
import socket
import threading
import time
from wsgiref.simple_server import make_server

from flow.cli.wsgi_server import QuietHandler, ThreadingWSGIServer

#: More connections than a backlog of 5 queues, fewer than gunicorn's 2048.
BURST = 300


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def test_the_listen_backlog_is_gunicorns():
    assert ThreadingWSGIServer.request_queue_size == 2048


def test_a_burst_of_connections_waits_in_the_backlog_and_is_answered():
    server = make_server("127.0.0.1", 0, hello, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    address = server.server_address
    clients: list[socket.socket] = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        # The server listens but accepts nothing yet: every connection the kernel
        # completes now waits in the listen backlog; one past it is not completed.
        for _ in range(BURST):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(address)
            clients.append(client)
        pending = set(clients)
        deadline = time.monotonic() + 2.0  # a SYN dropped for a full backlog is resent after 1 s
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.1)
            for client in writable:
                assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                pending.discard(client)
        assert not pending, f"{len(pending)} of {BURST} connections were not taken into the backlog"

        thread.start()
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            client.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        for client in clients:
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.0 200"), answer[:100]
    finally:
        for client in clients:
            client.close()
        if thread.is_alive():
            server.shutdown()
        server.server_close()
