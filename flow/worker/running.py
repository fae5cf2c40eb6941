"""The attempts running in this process, and the ones the engine told to stop.

The engine cannot call into a worker (workers never read the database; messages go one
way), so a cancel reaches a running attempt as a notice broadcast to every worker
(:class:`~flow.wire.attempts.CancelNotice`; on RabbitMQ a fanout exchange that each worker
process listens to, :mod:`flow.worker.cancellations`; in the embedded mode the engine's
in-process transport calls :meth:`RunningAttempts.cancel` itself). The worker running
that attempt raises the cancellation at the activity's next ``self.heartbeat()``
(docs/design.md, "Heartbeats and cancellation").

A notice may come before its attempt starts here (it was still queued): the last
``remember`` cancelled attempts are kept, so such an attempt starts cancelled.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

#: ``(workflow_id, position, attempt)``: one attempt, as a notice names it.
AttemptKey = tuple[str, int, int]


class RunningAttempts:
    """A cancel flag per running attempt, and a bounded memory of cancelled ones."""

    def __init__(self, *, remember: int = 10_000) -> None:
        self._lock = threading.Lock()
        #: A flag per running copy: a redelivered message can run the same attempt twice.
        self._running: dict[AttemptKey, list[threading.Event]] = {}
        self._cancelled: OrderedDict[AttemptKey, None] = OrderedDict()
        self._remember = remember

    def start(self, key: AttemptKey) -> threading.Event:
        """Register an attempt about to run; its flag is set once it is to stop."""
        flag = threading.Event()
        with self._lock:
            if key in self._cancelled:
                flag.set()
            self._running.setdefault(key, []).append(flag)
        return flag

    def finish(self, key: AttemptKey, flag: threading.Event) -> None:
        with self._lock:
            flags = self._running.get(key, [])
            if flag in flags:
                flags.remove(flag)
            if not flags:
                self._running.pop(key, None)

    def cancel(self, key: AttemptKey) -> bool:
        """Tell the attempt ``key`` to stop; True if it runs in this process."""
        with self._lock:
            self._cancelled[key] = None
            self._cancelled.move_to_end(key)
            while len(self._cancelled) > self._remember:
                self._cancelled.popitem(last=False)
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
