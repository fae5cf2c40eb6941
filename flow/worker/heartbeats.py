"""One attempt's heartbeats, throttled: ``self.heartbeat()`` may be called in a tight
loop, and each call must not become a message (and an engine transition).

The first heartbeat is sent at once; later ones at most once per interval (half the
attempt's ``heartbeat_s``, so that one always lands within it; 30 s without a
timeout). A call inside the interval keeps its details, and the newest kept details
are sent when the interval ends (one trailing send), so the engine always learns how
far the attempt got, as Temporal's SDK throttles.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from flow.core import strict_json
from flow.errors import InvalidJson
from flow.worker.reporting import DelayedCalls

#: Interval between heartbeats of an attempt without ``heartbeat_s``.
DEFAULT_INTERVAL_S = 30.0
#: Not faster than this, whatever ``heartbeat_s`` says.
MIN_INTERVAL_S = 0.1


def interval_for(heartbeat_s: float | None) -> float:
    return max(MIN_INTERVAL_S, heartbeat_s / 2) if heartbeat_s else DEFAULT_INTERVAL_S


class Heartbeats:
    """Sends ``send(details)`` for an attempt, at most once per ``interval_s``."""

    def __init__(
        self,
        send: Callable[[Any], None],
        *,
        interval_s: float,
        delayed: DelayedCalls,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.interval_s = interval_s
        self._delayed = delayed
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent: float | None = None
        self._pending: Any = None
        self._trailing: int | None = None
        self.sent = 0

    def beat(self, details: Any = None) -> None:
        """One heartbeat; raises ``ValueError`` for details that are not strict JSON or
        are over the payload limit (the activity's bug, said where it happens)."""
        self._check(details)
        with self._lock:
            now = self._clock()
            if self._trailing is not None:
                if details is not None:
                    self._pending = details
                return
            if self._last_sent is not None and now - self._last_sent < self.interval_s:
                self._pending = details
                self._trailing = self._delayed.schedule(self._last_sent + self.interval_s - now, self._flush)
                return
            self._last_sent = now
        self._emit(details)

    def close(self, *, flush: bool) -> None:
        """The attempt ended: nothing more is sent, except (``flush``: it failed) the
        details kept since the last send, which the next attempt resumes from."""
        with self._lock:
            trailing, self._trailing = self._trailing, None
            pending, self._pending = self._pending, None
        if trailing is not None and self._delayed.cancel(trailing) and flush and pending is not None:
            self._emit(pending)

    def _flush(self) -> None:
        with self._lock:
            if self._trailing is None:
                return
            self._trailing = None
            pending, self._pending = self._pending, None
            self._last_sent = self._clock()
        self._emit(pending)

    def _emit(self, details: Any) -> None:
        self.sent += 1
        self._send(details)

    def _check(self, details: Any) -> None:
        if details is None:
            return
        try:
            strict_json.check(details, path="heartbeat details")
            size = len(json.dumps(details))
        except (InvalidJson, TypeError, ValueError) as e:
            raise ValueError(f"heartbeat details must be JSON: {e}") from None
        if self._max_bytes is not None and size > self._max_bytes:
            raise ValueError(
                f"heartbeat details are {size} bytes of JSON, over the limit of {self._max_bytes} "
                "(FLOW_MAX_PAYLOAD_BYTES)"
            )
