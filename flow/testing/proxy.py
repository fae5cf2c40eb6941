"""A TCP fault proxy: the network between a component and PostgreSQL or RabbitMQ,
lying on demand.

:class:`FaultProxy` listens on a local port and forwards each connection to its
upstream; a test points one component's ``FLOW_DATABASE_URL`` or ``FLOW_BROKER_URL``
at it and switches faults while the component runs:

- :meth:`~FaultProxy.slow`: added latency (and jitter) each way, and a bandwidth limit;
- :meth:`~FaultProxy.black_hole`: connections stay open and nothing passes, new ones are
  accepted and carry nothing either, and nothing is reset (what a dead middlebox or a
  dropped route does; no RST tells anyone);
- :meth:`~FaultProxy.reset`: every open connection reset (RST both ways);
  :meth:`~FaultProxy.reset_on` resets a connection the moment a given byte string
  passes, e.g. ``b"COMMIT"``: a reset in the middle of a transaction;
- :meth:`~FaultProxy.partition`: new connections refused (reset at once) and the open
  ones black-holed;
- :meth:`~FaultProxy.heal`: all of it off; held bytes flow again, in order.

Why user space, not ``tc netem`` in a network namespace: it needs no root, and a
black hole here is what the component sees of a real one: its own kernel still
acknowledges what it sends (to the proxy), so only the component's own deadlines
(the database's silence timeout, AMQP heartbeats) can notice, never TCP's retransmission
timeout. Threads rather than asyncio: each direction of a connection is one reader
(which may block on a black hole while holding what it read) and one writer (which
sends each chunk at its due time), and a test reads best as plain calls from its own thread.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

#: Bytes read at once from either side.
_CHUNK = 65_536


@dataclass(frozen=True)
class Faults:
    """The faults in force (all off by default)."""

    #: Added one-way delay of every chunk, in seconds.
    latency_s: float = 0.0
    #: Up to this much more or less delay per chunk (order is kept), in seconds.
    jitter_s: float = 0.0
    #: Most bytes per second each way; None: unlimited.
    bytes_per_s: float | None = None
    #: Nothing passes; connections stay open.
    black_hole: bool = False
    #: New connections are reset at once (with ``black_hole``: a full partition).
    refuse: bool = False


class _Pipe:
    """One direction of one connection: a reader thread that holds what it read while
    the link is black-holed, and a writer thread that sends each chunk when it is due."""

    def __init__(self, proxy: FaultProxy, link: _Link, source: socket.socket, target: socket.socket, name: str) -> None:
        self.proxy, self.link, self.source, self.target = proxy, link, source, target
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.ready = threading.Condition()
        self.upstream = name == "up"
        self.threads = [
            threading.Thread(target=self._read, name=f"proxy-{name}-read", daemon=True),
            threading.Thread(target=self._write, name=f"proxy-{name}-write", daemon=True),
        ]
        self._last_due = 0.0

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        while not self.link.closed:
            try:
                chunk = self.source.recv(_CHUNK)
            except OSError:
                chunk = b""
            # A black hole passes nothing, the end of a stream neither: what was read
            # waits here (the sender's kernel has long acknowledged it) until the heal.
            faults = self.proxy.wait_while_black_hole(self.link)
            if self.link.closed:
                return
            if self.upstream and chunk and (trip := self.proxy.trips(chunk)) is not None:
                if trip:  # deliver the chunk first: the upstream acts on it, the client never hears
                    with contextlib.suppress(OSError):
                        self.target.sendall(chunk)
                self.link.reset()
                return
            due = time.monotonic() + max(0.0, faults.latency_s + random.uniform(-faults.jitter_s, faults.jitter_s))  # noqa: S311 - jitter
            due = self._last_due = max(due, self._last_due)  # jitter never reorders bytes
            with self.ready:
                self.queue.append((due, chunk))
                self.ready.notify()
            if not chunk:
                return

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.queue and not self.link.closed:
                    self.ready.wait(0.5)
                if self.link.closed:
                    return
                due, chunk = self.queue.popleft()
            pause = due - time.monotonic()
            if pause > 0 and self.link.wait_closed(pause):
                return
            if not chunk:
                with contextlib.suppress(OSError):
                    self.target.shutdown(socket.SHUT_WR)
                return
            try:
                self.target.sendall(chunk)
            except OSError:
                self.link.close()
                return
            rate = self.proxy.faults.bytes_per_s
            if rate and self.link.wait_closed(len(chunk) / rate):
                return


class _Link:
    """One proxied connection: the client's socket, the upstream's, two pipes."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.closed = False
        self._closed = threading.Event()

    def wait_closed(self, timeout_s: float) -> bool:
        return self._closed.wait(timeout_s)

    def reset(self) -> None:
        """Close both sockets with an RST (SO_LINGER 0), not a FIN."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        self.closed = True
        self._closed.set()
        for sock in (self.client, self.upstream):
            # SHUT_RD wakes a reader blocked in recv() (close() alone does not, and the
            # socket would stay open until it returned) and sends nothing on the wire.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` with switchable faults.

    Use as a context manager (or :meth:`start`/:meth:`stop`); :attr:`port` is where to
    connect. :attr:`connections` counts the connections accepted so far.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = Faults()
        self.connections = 0
        #: Connections reset because they sent :meth:`reset_on`'s marker.
        self.marker_resets = 0
        self._changed = threading.Condition()
        self._links: set[_Link] = set()
        self._trip: tuple[bytes, bool] | None = None
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)

    @classmethod
    def in_front_of(cls, url: str) -> FaultProxy:
        """A proxy (not started) to the host and port of a PostgreSQL or AMQP ``url``."""
        where = urlsplit(url)
        default_port = 5672 if where.scheme.startswith("amqp") else 5432
        return cls(where.hostname or "127.0.0.1", where.port or default_port)

    def __repr__(self) -> str:
        return f"<FaultProxy :{self.port} -> {self.upstream[0]}:{self.upstream[1]} {self.faults}>"

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url_for(self, url: str) -> str:
        """``url`` (``scheme://user@host:port/...``) with its host and port replaced by this proxy's."""
        scheme, rest = url.split("://", 1)
        userinfo, _, hostpart = rest.rpartition("@")
        tail = hostpart.split("/", 1)[1] if "/" in hostpart else ""
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{tail}"

    # -- faults -----------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        with self._changed:
            self.faults = replace(self.faults, **changes)  # type: ignore[arg-type]
            self._changed.notify_all()

    def slow(self, *, latency_s: float = 0.0, jitter_s: float = 0.0, bytes_per_s: float | None = None) -> None:
        """Delay every chunk by ``latency_s`` (± ``jitter_s``) each way; cap the bandwidth."""
        self._set(latency_s=latency_s, jitter_s=jitter_s, bytes_per_s=bytes_per_s)

    def black_hole(self) -> None:
        """Nothing passes any more, on open connections or new ones; nothing is reset."""
        self._set(black_hole=True)

    def partition(self) -> None:
        """A full partition: new connections are refused, the open ones black-holed."""
        self._set(black_hole=True, refuse=True)

    def heal(self) -> None:
        """Every fault off: held bytes pass again, new connections are accepted."""
        self._set(black_hole=False, refuse=False, latency_s=0.0, jitter_s=0.0, bytes_per_s=None)
        self._trip = None

    def reset(self) -> int:
        """Reset every open connection (RST to both sides); returns how many."""
        with self._changed:
            links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def reset_on(self, marker: bytes, *, deliver: bool = False) -> None:
        """Reset the first connection over which the client sends ``marker`` (once): a client
        cut off in the middle of a transaction. The chunk that holds ``marker`` is dropped
        (the upstream never sees it: a ``COMMIT`` that never arrived), or with ``deliver``
        sent first (the upstream acts on it, the client never hears the answer)."""
        self._trip = (marker, deliver)

    def trips(self, chunk: bytes) -> bool | None:
        """None, or (once) whether to deliver ``chunk`` before the reset it trips."""
        with self._changed:
            trip = self._trip
            if trip is None or trip[0] not in chunk:
                return None
            self._trip = None
            self.marker_resets += 1
            return trip[1]

    def wait_while_black_hole(self, link: _Link) -> Faults:
        """Block while the link is black-holed (or until ``link`` closes); the faults then in force."""
        with self._changed:
            while self.faults.black_hole and not link.closed and not self._stopped:
                self._changed.wait(0.5)
            return self.faults

    # -- plumbing ---------------------------------------------------------------------

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._changed:
            self._changed.notify_all()
            links = list(self._links)
        for link in links:
            link.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.faults.refuse:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), name="proxy-connect", daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        # In a black hole, a new connection is accepted and carries nothing: the upstream
        # is reached only once the fault heals (the client may have given up by then).
        placeholder = _Link(client, socket.socket())
        with self._changed:
            self._links.add(placeholder)
        self.wait_while_black_hole(placeholder)
        with self._changed:
            self._links.discard(placeholder)
        if placeholder.closed or self._stopped:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream)
        with self._changed:
            self._links.add(link)
        pipes = [_Pipe(self, link, client, upstream, "up"), _Pipe(self, link, upstream, client, "down")]
        for pipe in pipes:
            pipe.start()
        for pipe in pipes:
            for thread in pipe.threads:
                thread.join()
        link.close()
        with self._changed:
            self._links.discard(link)
