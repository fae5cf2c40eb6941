"""The one background-thread shape: a loop that calls a step every so often until stopped,
the one reconnect loop the pika consumers are built on, and the one poll-until loop.

Every periodic pass of a process (lease rounds, outbox passes, retention, schedules,
idle-actor sweeps, the outbox's acknowledgements) is a :class:`BackgroundLoop`: a
daemon thread, an :class:`threading.Event` to stop it (which is also what the loop
waits on, so ``stop()`` never waits out a pause), a step whose exception is logged and
does not end the loop, and a ``stop(timeout_s)`` that joins. Written once, a loop
cannot forget to catch, to stop promptly, or to join.

Every pika consumer (the engine's connection, the worker's cancel notices, the AMQP
start door) is a :class:`Reconnecting` loop: connect, consume until the connection is
lost, back off (doubling from ``pause_s`` up to ``max_pause_s``, back to ``pause_s``
once a connection works again) and connect again, until stopped.

Everything that waits on state someone else changes calls :func:`poll_until`: the CLI
watching a workflow, :meth:`flow.process.embedded.EmbeddedFlow.wait`, the test suite's
``wait_for``, the benchmark's drivers and :func:`flow.testing.wait_http`. Waiting on a
condition (and never on a fixed sleep) is what keeps those correct on a busy machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from flow.errors import PollTimeout

logger = logging.getLogger(__name__)

C = TypeVar("C")


class BackgroundLoop:
    """Calls ``step`` every ``every_s`` seconds in a daemon thread named ``name``.

    The first call comes after ``first_s`` (default ``every_s``); ``every_s`` of 0
    calls ``step`` again at once (for a step that blocks on its own). An exception
    in ``step`` is logged and the loop goes on; :meth:`stop` sets :attr:`stopping`
    (which a long step may check), wakes the wait and joins the thread.
    """

    def __init__(self, name: str, step: Callable[[], object], *, every_s: float, first_s: float | None = None) -> None:
        self.name = name
        self.step = step
        self.every_s = every_s
        self.first_s = every_s if first_s is None else first_s
        #: Set by :meth:`stop`; the loop waits on it, so a stop ends any pause at once.
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<BackgroundLoop {self.name} every {self.every_s:g} s alive={self.is_alive()}>"

    def start(self) -> None:
        """Start the thread (once; a second call does nothing)."""
        with self._lock:
            if self._thread is None and not self.stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop after the step in hand; wait up to ``timeout_s``. True if the thread ended."""
        self.stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("%s did not stop within %.1f s", self.name, timeout_s)
            return False
        return True

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        wait_s = self.first_s
        while not self.stopping.wait(wait_s):
            wait_s = self.every_s
            try:
                self.step()
            except Exception as e:  # one failed pass must not end the loop: the next one tries again
                # A warning, not an error: a pass fails while the database or the broker
                # is away, and the next pass is the remedy. The traceback is for debugging.
                logger.warning("%s: a pass failed (%s: %s); trying again", self.name, type(e).__name__, e)
                logger.debug("%s: the failed pass", self.name, exc_info=True)


class Reconnecting(Generic[C]):
    """A consumer that reconnects: ``connect()`` a connection, ``consume(connection)``
    until it returns or raises, ``close(connection)``, then back off and connect again.

    ``consume`` calls :meth:`connected` once the connection really works (its channel
    is consuming): the next loss then pauses ``pause_s`` again, not the backed-off
    pause. :meth:`stop` calls ``interrupt(connection)`` (from the stopping thread) to
    end a blocking ``consume`` at once, then joins.
    """

    def __init__(
        self,
        name: str,
        *,
        connect: Callable[[], C],
        consume: Callable[[C], None],
        close: Callable[[C], None] = lambda connection: None,
        interrupt: Callable[[C], None] = lambda connection: None,
        pause_s: float = 1.0,
        max_pause_s: float = 5.0,
    ) -> None:
        self.name = name
        self._connect = connect
        self._consume = consume
        self._close = close
        self._interrupt = interrupt
        self.pause_s = pause_s
        self.max_pause_s = max(max_pause_s, pause_s)
        #: The pause before the next attempt to connect.
        self.next_pause_s = pause_s
        #: Attempts to connect so far, and connections lost (for logs and tests).
        self.attempts = 0
        self.losses = 0
        self.connection: C | None = None
        self._loop = BackgroundLoop(name, self._session, every_s=0)
        self.stopping = self._loop.stopping

    def __repr__(self) -> str:
        return f"<Reconnecting {self.name} attempts={self.attempts} losses={self.losses}>"

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop consuming (interrupting ``consume``), close, and join."""
        self.stopping.set()
        connection = self.connection
        if connection is not None:
            try:
                self._interrupt(connection)
            except Exception:  # the connection is closing already
                pass
        return self._loop.stop(timeout_s)

    def is_alive(self) -> bool:
        return self._loop.is_alive()

    def connected(self) -> None:
        """The connection works: a loss from now on starts backing off from ``pause_s``."""
        self.next_pause_s = self.pause_s

    def _session(self) -> None:
        connection = None
        self.attempts += 1
        try:
            connection = self._connect()
            self.connection = connection
            self._consume(connection)
            if not self.stopping.is_set():
                self.losses += 1
                logger.warning("%s: connection closed; reconnecting in %.1f s", self.name, self.next_pause_s)
        except Exception as e:  # the broker went away, or a bug: connect again, never die
            if not self.stopping.is_set():
                self.losses += 1
                logger.warning("%s: %s: %s; reconnecting in %.1f s", self.name, type(e).__name__, e, self.next_pause_s)
        finally:
            self.connection = None
            if connection is not None:
                try:
                    self._close(connection)
                except Exception:  # already closed
                    pass
        # No connection is open here: this pause holds up no I/O.
        pause_s, self.next_pause_s = self.next_pause_s, min(self.next_pause_s * 2, self.max_pause_s)
        self.stopping.wait(pause_s)


T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float | None,
    every_s: float = 0.05,
    what: str = "",
    max_every_s: float | None = None,
) -> T:
    """Call ``check`` every ``every_s`` seconds until it returns something truthy; return that.

    With ``max_every_s``, the pause doubles after each check up to that: a wait that may
    last hours (:meth:`flow.client.Client.result`) answers quickly when it is short and
    asks rarely when it is long.

    ``check`` is always called at least once, and once more after the deadline, so a
    slow machine that overslept still sees a condition that has come true. After
    ``timeout_s`` (``None``: never) raise :class:`PollTimeout`, which carries the
    last value ``check`` returned.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise PollTimeout(what or getattr(check, "__name__", repr(check)), timeout_s or 0.0, value)
        pause_s = every_s if deadline is None else min(every_s, max(0.0, deadline - time.monotonic()))
        time.sleep(pause_s)
        if max_every_s is not None:
            every_s = min(max_every_s, every_s * 2)
