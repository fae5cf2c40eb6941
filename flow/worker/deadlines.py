"""Start-to-close deadlines of activity attempts: one watchdog thread per process.

An attempt registers itself before ``do_activity()``, arms its deadline, and takes it
back right after; a watchdog thread raises the timeout exception in the attempt's thread when the
deadline passes first, as Dramatiq's ``TimeLimit`` middleware does for whole messages.

What a ``threading.Timer`` per attempt gets wrong: the timer can fire after
``do_activity()`` returned and before ``cancel()``, so the exception lands in whatever
the worker thread runs next (the result report, the next message). Here each attempt
is an entry that exactly one side claims, with a single atomic ``dict.pop``: either
the attempt (it finished in time; the watchdog can no longer fire for it) or the
watchdog (it raises the exception, then marks the entry ``fired``). An attempt that
finds its entry claimed waits for that exception and lets it surface in
:meth:`Deadlines.finish`, inside the caller's ``try``, so it never escapes.

The attempt's side takes no lock (only the first attempt of a process does, to start
the watchdog): an asynchronous exception (ours, or Dramatiq's own time limit)
delivered between a lock's acquire and its ``try`` would leave the lock held for good.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field

from dramatiq.threading import Interrupt, raise_thread_exception

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Deadline:
    """One registered attempt: its thread, its deadline (``time.monotonic()``) and
    whether the watchdog has raised the exception in it."""

    id: int
    thread_id: int
    deadline: float
    fired: bool = field(default=False)

    def __repr__(self) -> str:
        return f"<Deadline #{self.id} thread={self.thread_id} fired={self.fired}>"


class Deadlines:
    """The deadline registry and its watchdog thread (started on first use, and again
    in a forked child, which inherits the registry but not the thread)."""

    def __init__(self, exception: type[Interrupt]) -> None:
        self.exception = exception
        self._entries: dict[int, Deadline] = {}
        self._ids = itertools.count(1)
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def register(self) -> Deadline:
        """Register the calling thread's next attempt, not armed yet: it cannot fire.

        Call it before the ``try`` whose ``finally`` calls :meth:`finish`, and
        :meth:`arm` inside it, so that whatever the watchdog raises is raised inside.
        """
        self._ensure_watchdog()
        entry = Deadline(next(self._ids), threading.get_ident(), math.inf)
        self._entries[entry.id] = entry
        return entry

    def arm(self, entry: Deadline, timeout_s: float) -> None:
        """Start the clock: the watchdog may raise the exception from now on."""
        entry.deadline = time.monotonic() + timeout_s
        self._wakeups.put(None)  # the watchdog recomputes its next wake-up

    def finish(self, entry: Deadline) -> None:
        """Take the attempt back. Raises :attr:`exception` here, and only here, if
        the watchdog claimed it first; after this returns, nothing can be raised."""
        if self._entries.pop(entry.id, None) is not None:
            return  # claimed by the attempt: in time
        # Claimed by the watchdog: its exception is set, or will be in a moment.
        # Spin until it surfaces (normally at once, in this loop).
        while not entry.fired:
            time.sleep(0.0001)
        # It was set before ``fired``: either it surfaced already (and the activity
        # swallowed it) or it is still pending. Clear it and raise it ourselves.
        _clear_async_exception(entry.thread_id)
        raise self.exception()

    def _ensure_watchdog(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._watch, name="flow-deadlines", daemon=True)
                self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                timeout = self._fire_due()
            except Exception:  # pragma: no cover - the watchdog must outlive any bug
                logger.exception("deadline watchdog failed; retrying")
                timeout = 0.1
            try:
                self._wakeups.get(timeout=timeout)
            except queue.Empty:
                pass

    def _fire_due(self) -> float | None:
        """Raise the exception in every thread past its deadline; return the wait until
        the next deadline (``None``: none registered)."""
        now = time.monotonic()
        nearest = None
        for entry in list(self._entries.values()):
            if entry.deadline == math.inf:
                continue  # registered, not armed yet
            if entry.deadline <= now:
                if self._entries.pop(entry.id, None) is not None:  # claimed by the watchdog
                    raise_thread_exception(entry.thread_id, self.exception)
                    entry.fired = True
            elif nearest is None or entry.deadline < nearest:
                nearest = entry.deadline
        return None if nearest is None else max(nearest - now, 0.0)

    def __repr__(self) -> str:
        return f"<Deadlines {self.exception.__name__} registered={len(self._entries)}>"


def _clear_async_exception(thread_id: int) -> None:
    """Drop an asynchronous exception set in ``thread_id`` and not yet raised."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
