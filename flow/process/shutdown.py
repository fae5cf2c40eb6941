"""Graceful shutdown of ``dramatiq flow.actors`` worker processes.

On SIGTERM a Dramatiq worker process stops taking messages and finishes the ones it
holds; a second SIGTERM makes it exit at once, abandoning them. Process managers
often send two: honcho signals the whole process group, and the Dramatiq master
forwards the signal to its children again, so each child gets SIGTERM twice within
milliseconds; and honcho signals every remaining process again each time one of them
exits (gunicorn usually stops first). :func:`ignore_repeated_sigterm` ignores repeats
that arrive within ``repeat_window_s`` (30 s) of the first, so that the in-flight
activity finishes and reports; SIGKILL, or a SIGTERM after the window, stops it at
once. Anything that outlives the manager's patience (honcho SIGKILLs after 5 s) is
redelivered by RabbitMQ, since it was never acknowledged.

``flow.actors`` installs it first thing, before it loads the rest of the runtime: a
worker process that is still booting when the two signals come would otherwise be
killed by the second (Dramatiq's handler is in place before it imports the module).
The :class:`GracefulShutdown` middleware installs it too, for brokers set up
elsewhere.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)

#: Repeats of SIGTERM within this many seconds of the first are ignored.
REPEAT_WINDOW_S = 30.0

_installed_in_pid = 0


def ignore_repeated_sigterm(repeat_window_s: float = REPEAT_WINDOW_S) -> None:
    """Wrap this process's SIGTERM handler so that repeats within the window are ignored.

    Once per process; nothing happens outside the main thread or when the handler is
    not a Python function (a process that is not a Dramatiq worker keeps its own).
    """
    global _installed_in_pid
    if _installed_in_pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    original = signal.getsignal(signal.SIGTERM)
    if not callable(original):
        return
    _installed_in_pid = os.getpid()
    first_at: float | None = None

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal first_at
        now = time.monotonic()
        if first_at is not None and now - first_at < repeat_window_s:
            logger.info("ignoring a repeated SIGTERM: finishing the messages in hand first")
            return
        first_at = first_at or now
        original(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


class GracefulShutdown(dramatiq.Middleware):
    """Installs :func:`ignore_repeated_sigterm` when a worker process boots (if not yet)."""

    def __init__(self, *, repeat_window_s: float = REPEAT_WINDOW_S) -> None:
        self.repeat_window_s = repeat_window_s

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        ignore_repeated_sigterm(self.repeat_window_s)
