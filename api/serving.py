"""The gunicorn worker class of the API: gunicorn's threaded worker, with a deadline
on reading each request, so that slow clients cannot hold its threads; and its logger
class, which hides callback tokens (:class:`RedactingLogger`).

gunicorn 27's ``gthread`` worker waits for a connection's first bytes in its poller,
but once they arrive a thread of its pool reads the request line, the headers and
(through the application) the body from a blocking socket with no timeout; nothing in
gunicorn's settings bounds that for HTTP/1 (``timeout`` only watches the worker
process, ``keepalive`` only idle connections). The ``sync`` worker is worse: it is one
request at a time, so one client that sends half a body stalls the whole process
until the arbiter kills it after ``timeout``.

:class:`BoundedReadWorker` gives every request :data:`REQUEST_READ_TIMEOUT_S` seconds,
from its first byte, to arrive whole, and each read :data:`IDLE_READ_TIMEOUT_S`
seconds of silence at most. A client too slow for that gets ``408`` (if the API was
reading its body) or a closed connection (if it was still sending headers), and the
thread is free again. Together with enough threads (``api/gunicorn_conf.py``), a few
slow clients cannot delay anyone else, and many can only do so for that long.

Why not an async worker (gevent): Dramatiq's RabbitMQ broker keeps one connection per
thread and the Peewee pool one database connection per thread; under gevent's
monkey-patching each request's greenlet would count as a thread of its own.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import falcon
from gunicorn.glogging import Logger
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from flow.process.logs import redact_handlers

logger = logging.getLogger("gunicorn.error")

#: Seconds a request has, from its first byte, to arrive whole (line, headers, body).
REQUEST_READ_TIMEOUT_S = 10.0
#: Seconds one read may wait for the client's next bytes.
IDLE_READ_TIMEOUT_S = 5.0
#: Seconds a response may take to be sent (a client that stops reading it).
SEND_TIMEOUT_S = 30.0


class RequestReadTimeout(NoMoreData):
    """Raised when a client has not sent its whole request in time.

    A gunicorn ``NoMoreData``: gunicorn closes the connection quietly, as for a
    client that went away; while the API reads a body it answers ``408`` first
    (:func:`handle_read_timeout`).
    """

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def __str__(self) -> str:
        return self.message


class BoundedSocket(socket.socket):
    """A client socket whose reads of one request share a deadline."""

    _deadline: float | None = None
    _armed = False
    _closing = False

    @classmethod
    def adopt(cls, sock: socket.socket) -> BoundedSocket:
        """The same connection as ``sock`` (which is detached), as a :class:`BoundedSocket`."""
        timeout = sock.gettimeout()
        bounded = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        bounded.settimeout(timeout)
        return bounded

    def start_request(self) -> None:
        """A new request: its deadline starts with its first read."""
        self._armed, self._deadline = True, None

    def shutdown(self, how: int) -> None:
        super().shutdown(how)
        self._closing = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._closing:
            # gunicorn's graceful close drains what the client still sends, for up to
            # 2 s, on the worker's main thread, which also accepts connections: take
            # only what has already arrived (a timed-out client would use all 2 s).
            super().setblocking(False)
            return super().recv(bufsize, flags)
        if self._armed:
            now = time.monotonic()
            if self._deadline is None:
                self._deadline = now + REQUEST_READ_TIMEOUT_S
            remaining = self._deadline - now
            if remaining <= 0:
                raise self._timed_out()
            super().settimeout(min(remaining, IDLE_READ_TIMEOUT_S))
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            if self._armed:
                raise self._timed_out() from None
            raise

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().settimeout(SEND_TIMEOUT_S)  # a read may have left a shorter one
        super().sendall(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        super().settimeout(SEND_TIMEOUT_S)
        return super().sendfile(file, offset, count)

    def _timed_out(self) -> RequestReadTimeout:
        self._armed = False  # the connection is done for; later reads (draining) are not bounded twice
        self._deadline = time.monotonic()
        try:
            host, port = self.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "a client"
        message = (
            f"{peer} did not send its whole request within {REQUEST_READ_TIMEOUT_S:g} s "
            f"(or went silent for {IDLE_READ_TIMEOUT_S:g} s): closing the connection"
        )
        logger.warning("%s", message)
        return RequestReadTimeout(message)


class BoundedReadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker with a read deadline per request (module docstring).

    Written against gunicorn 27's ``ThreadWorker`` (``enqueue_req``/``handle``); the
    deploy tests run it against slow clients (``tests/deploy/test_slow_clients.py``).
    """

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, BoundedSocket):
            conn.sock = BoundedSocket.adopt(conn.sock)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> object:  # what gunicorn's handle returns (a bool, or its defer sentinel)
        if isinstance(conn.sock, BoundedSocket):
            conn.sock.start_request()
        return super().handle(conn)


def handle_read_timeout(req: falcon.Request, resp: falcon.Response, ex: RequestReadTimeout, params: Any) -> None:
    """The API was reading the body of a request that stopped arriving: 408, and close."""
    raise falcon.HTTPError(
        falcon.HTTP_408,
        title="Request timeout",
        description=str(ex),
        headers={"Connection": "close"},
    )


class RedactingLogger(Logger):
    """gunicorn's logger, whose lines hide callback tokens as every other line of the
    API does (:mod:`flow.process.logs`). gunicorn's loggers keep handlers of their own
    (they do not propagate to the root logger): its error log, and its access log when
    an operator turns it on, whose request lines would carry ``POST /signals/cb1.…``
    in full."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        redact_handlers(self.error_log)
        redact_handlers(self.access_log)
