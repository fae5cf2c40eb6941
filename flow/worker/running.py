"""The attempts running in this process, and the ones the engine told to stop.

The engine cannot call into a worker (workers never read the database; messages go one
way), so a cancel reaches a running attempt as a notice broadcast to every worker
(:class:`~flow.wire.attempts.CancelNotice`; on RabbitMQ a fanout exchange that each worker
process listens to, :mod:`flow.worker.cancellations`; in the embedded mode the engine's
in-process transport calls :meth:`RunningAttempts.cancel` itself). The worker running
that attempt raises the cancellation at the activity's next ``self.heartbeat()``
(docs/design.md, "Heartbeats and cancellation").

A notice may come before its attempt starts here (it was still queued): the last
``remember`` cancelled attempts are kept, so such an attempt starts cancelled. Past that
number a notice is forgotten, but not what it could mean: the worker keeps the send time
of the newest notice it forgot, and an attempt sent before it (it may be one of those the
forgotten notices named) is not started either. It is reported ``Cancelled`` like one
told to stop; an attempt whose run goes on is then sent again at once (a cancel meant for
the run before, :mod:`flow.core.kinds.activity`), so a batch cancel of any size never
starts a cancelled attempt and costs the others at most one more trip through the queue.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

#: ``(workflow_id, position, attempt)``: one attempt, as a notice names it.
AttemptKey = tuple[str, int, int]


class RunningAttempts:
    """A cancel flag per running attempt, and a bounded memory of cancelled ones."""

    def __init__(self, *, remember: int = 10_000) -> None:
        self._lock = threading.Lock()
        #: A flag per running copy: a redelivered message can run the same attempt twice.
        self._running: dict[AttemptKey, list[threading.Event]] = {}
        #: The cancelled attempts remembered, each with its notice's send time (ms, epoch).
        self._cancelled: OrderedDict[AttemptKey, float] = OrderedDict()
        self._remember = remember
        #: The send time of the newest notice forgotten (None: none was).
        self._forgotten_ms: float | None = None

    def start(self, key: AttemptKey, *, sent_ms: float | None = None) -> threading.Event:
        """Register an attempt about to run (``sent_ms``: when its message was sent, ms
        since the epoch); its flag is set once it is to stop, and is set already if it was
        told to, or may have been by a notice forgotten since (:meth:`unsure`)."""
        flag = threading.Event()
        with self._lock:
            if key in self._cancelled or self._unsure(sent_ms):
                flag.set()
            self._running.setdefault(key, []).append(flag)
        return flag

    def unsure(self, sent_ms: float | None) -> bool:
        """Whether an attempt sent at ``sent_ms`` may be one a forgotten notice named: it
        was sent before the newest notice forgotten. An attempt whose send time is unknown
        (outside a worker's message) is taken as it is."""
        with self._lock:
            return self._unsure(sent_ms)

    def remembers(self, key: AttemptKey) -> bool:
        """Whether a notice told the attempt ``key`` to stop, and is remembered."""
        with self._lock:
            return key in self._cancelled

    def _unsure(self, sent_ms: float | None) -> bool:
        return sent_ms is not None and self._forgotten_ms is not None and sent_ms <= self._forgotten_ms

    def finish(self, key: AttemptKey, flag: threading.Event) -> None:
        with self._lock:
            flags = self._running.get(key, [])
            if flag in flags:
                flags.remove(flag)
            if not flags:
                self._running.pop(key, None)

    def cancel(self, key: AttemptKey, *, sent_ms: float | None = None) -> bool:
        """Tell the attempt ``key`` to stop (``sent_ms``: when the notice was sent, ms since
        the epoch; None: now); True if it runs in this process."""
        sent_ms = time.time() * 1000 if sent_ms is None else sent_ms
        with self._lock:
            self._cancelled[key] = sent_ms
            self._cancelled.move_to_end(key)
            while len(self._cancelled) > self._remember:
                _, forgotten_ms = self._cancelled.popitem(last=False)
                self._forgotten_ms = max(forgotten_ms, self._forgotten_ms or forgotten_ms)
            flags = list(self._running.get(key, ()))
        for flag in flags:
            flag.set()
        return bool(flags)

    def __len__(self) -> int:
        return len(self._running)

    def __repr__(self) -> str:
        return f"<RunningAttempts running={len(self._running)} cancelled={len(self._cancelled)}>"


#: This process's running attempts.
RUNNING = RunningAttempts()
