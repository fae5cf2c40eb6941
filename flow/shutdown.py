"""Graceful shutdown of ``dramatiq flow.actors`` worker processes.

On SIGTERM a Dramatiq worker process stops taking messages and finishes the ones it
holds; a second SIGTERM makes it exit at once, abandoning them. Process managers
often send two: honcho signals the whole process group, and the Dramatiq master
forwards the signal to its children again, so each child gets SIGTERM twice within
milliseconds; and honcho signals every remaining process again each time one of them
exits (gunicorn usually stops first). This middleware ignores repeats that arrive
within ``repeat_window_s`` (30 s) of the first, so that the in-flight activity
finishes and reports; SIGKILL, or a SIGTERM after the window, stops it at once.
Anything that outlives the manager's patience (honcho SIGKILLs after 5 s) is
redelivered by RabbitMQ, since it was never acknowledged.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)


class GracefulShutdown(dramatiq.Middleware):
    def __init__(self, *, repeat_window_s: float = 30.0) -> None:
        self.repeat_window_s = repeat_window_s

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        original = signal.getsignal(signal.SIGTERM)
        if not callable(original):
            return
        first_at: float | None = None

        def on_sigterm(signum: int, frame: Any) -> None:
            nonlocal first_at
            now = time.monotonic()
            if first_at is not None and now - first_at < self.repeat_window_s:
                logger.info("ignoring a repeated SIGTERM: finishing the messages in hand first")
                return
            first_at = first_at or now
            original(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
