"""The HTTP server of ``flow up``: ``wsgiref``, one thread per request, chunked bodies decoded.

``wsgiref`` hands the application the raw socket stream, so a request sent with
``Transfer-Encoding: chunked`` (no ``Content-Length``) would read as empty, or as the
chunk framing itself. The handler here decodes such a body before the application
runs, keeping at most the API's body limit plus one byte: the application then sees
an ordinary body with a ``Content-Length`` and refuses one over its limit with its own
413. (gunicorn decodes chunked bodies itself; this is only for ``flow up``.)
"""

from __future__ import annotations

import io
import logging
import re
from socketserver import ThreadingMixIn
from typing import Any, BinaryIO, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

logger = logging.getLogger("flow.http")

#: After the body limit is passed, the rest of a chunked body is still read (and
#: dropped) up to this many bytes, so that the client, still sending, receives the
#: 413 instead of a connection reset; a longer body just has its connection closed.
DISCARD_LIMIT_BYTES = 8 * 1024 * 1024

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server, one thread per request, for ``flow up``."""

    daemon_threads = True
    #: The listen backlog: connections the kernel completes while no thread has
    #: accepted them yet. ``socketserver``'s 5 resets some clients of a burst (1 to 3
    #: of 1,200 requests from 20 threads); 2048 is gunicorn's ``backlog`` default.
    #: Linux caps it at ``net.core.somaxconn`` (4096 since 5.4).
    request_queue_size = 2048
    #: Largest request body handed to the application (``flow up`` sets the API's
    #: ``FLOW_MAX_BODY_BYTES``); a chunked body is cut at this plus one byte.
    max_body_bytes = 1_048_576


class BadChunkedBody(ValueError):
    """Raised when a chunked request body does not follow RFC 9112 section 7.1."""


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the ``flow.http`` logger instead of stderr; chunked request
    bodies are decoded (see the module docstring)."""

    #: Seconds a client may leave the connection silent (a stalled client frees its thread).
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.info("%s %s", self.address_string(), format % args)

    def handle(self) -> None:
        """``WSGIRequestHandler.handle``, with the request body decoded first when chunked."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # it has sent the error
            return
        environ = self.get_environ()
        rfile = cast(BinaryIO, self.rfile)  # a BufferedReader (typeshed says only BufferedIOBase)
        stdin: BinaryIO = rfile
        codings = [c.strip().lower() for c in self.headers.get("Transfer-Encoding", "").split(",") if c.strip()]
        if codings:
            if codings != ["chunked"]:
                self.send_error(501, "Only the chunked transfer coding is supported")
                return
            try:
                body = read_chunked(rfile, keep_bytes=self.server.max_body_bytes + 1)  # type: ignore[attr-defined]  # our server; typed BaseServer
            except BadChunkedBody as e:
                self.send_error(400, f"Malformed chunked body: {e}")
                return
            # The body is now an ordinary one: the framing headers no longer apply.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(len(body))
            stdin = io.BytesIO(body)
        handler = ServerHandler(stdin, cast(BinaryIO, self.wfile), self.get_stderr(), environ, multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back pointer for logging
        handler.run(self.server.get_app())  # type: ignore[attr-defined]  # our server; typed BaseServer


def read_chunked(stream: BinaryIO, *, keep_bytes: int, discard_bytes: int = DISCARD_LIMIT_BYTES) -> bytes:
    """Decode a chunked body from ``stream``; return its first ``keep_bytes`` bytes.

    Past ``keep_bytes`` the data is read and dropped, up to ``discard_bytes`` more; a
    body longer than that stops being read (its connection is closed after the answer).
    Trailer fields are read and ignored.
    """
    kept = bytearray()
    dropped = 0
    while True:
        line = stream.readline(1026)
        if not line.endswith(b"\n"):
            raise BadChunkedBody("a chunk size line is missing or too long")
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise BadChunkedBody(f"chunk size {size_text[:20]!r} is not hexadecimal")
        size = int(size_text, 16)
        if size == 0:
            break
        remaining = size
        while remaining:
            data = stream.read(min(remaining, 65536))
            if not data:
                raise BadChunkedBody("the body ended inside a chunk")
            remaining -= len(data)
            room = keep_bytes - len(kept)
            kept += data[:room]
            dropped += max(len(data) - room, 0)
            if dropped > discard_bytes:
                return bytes(kept)
        if stream.readline(3).strip():
            raise BadChunkedBody("a chunk is longer than its size")
    for _ in range(100):  # trailer section, up to its empty line
        trailer = stream.readline(8192)
        if trailer in (b"\r\n", b"\n", b""):
            break
    return bytes(kept)
