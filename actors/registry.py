"""``WorkflowActors``: finds, starts and stops the workflow actors of one engine process.

Live actors are bounded (invariant 7): each is a thread, so an actor that has been
idle for ``idle_s`` is stopped, and beyond ``max_live`` the least recently used
idle ones are stopped at once. The next event for a stopped workflow starts a fresh
actor, which reloads the workflow from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

logger = logging.getLogger(__name__)


@dataclass
class _Entry:
    ref: pykka.ActorRef[Any]
    in_use: int = 0
    last_used: float = 0.0


class WorkflowActors:
    """A ``workflow_id -> ActorRef`` map with bounded size (Pykka has no lookup by key)."""

    def __init__(
        self,
        factory: Callable[[str], pykka.ActorRef[Any]],
        *,
        max_live: int = 1000,
        idle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._max_live = max_live
        self._idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._sweeper: threading.Thread | None = None
        self._closed = threading.Event()

    def ask(self, workflow_id: str, message: Any, *, timeout_s: float = 60.0) -> Any:
        """Deliver ``message`` to the workflow's actor (started if needed) and wait for its reply."""
        with self._lock:
            entry = self._entries.get(workflow_id)
            if entry is None or not entry.ref.is_alive():
                entry = self._entries[workflow_id] = _Entry(self._factory(workflow_id))
            entry.in_use += 1
            self._entries.move_to_end(workflow_id)
        try:
            return entry.ref.ask(message, timeout=timeout_s)
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.last_used = self._clock()
                surplus = self._take_surplus()
            _stop_all(surplus)

    def __len__(self) -> int:
        return len(self._entries)

    def _take_surplus(self) -> list[pykka.ActorRef[Any]]:
        """Remove (under the lock) idle entries beyond ``max_live``, oldest first."""
        taken = []
        if len(self._entries) > self._max_live:
            for workflow_id, entry in list(self._entries.items()):
                if len(self._entries) <= self._max_live:
                    break
                if entry.in_use == 0:
                    del self._entries[workflow_id]
                    taken.append(entry.ref)
        return taken

    def stop_idle(self) -> int:
        """Stop every actor idle for ``idle_s`` or more; return how many."""
        deadline = self._clock() - self._idle_s
        with self._lock:
            idle = [wid for wid, e in self._entries.items() if e.in_use == 0 and e.last_used <= deadline]
            refs = [self._entries.pop(wid).ref for wid in idle]
        _stop_all(refs)
        return len(refs)

    def start_sweeper(self, *, every_s: float | None = None) -> None:
        """Stop idle actors in the background, every ``every_s`` (default ``idle_s / 2``)."""
        interval = every_s or max(self._idle_s / 2, 0.05)

        def sweep() -> None:
            while not self._closed.wait(interval):
                try:
                    self.stop_idle()
                except Exception:  # keep sweeping; one failure must not leak threads forever
                    logger.exception("idle actor sweep failed")

        self._sweeper = threading.Thread(target=sweep, name="workflow-actor-sweeper", daemon=True)
        self._sweeper.start()

    def stop_all(self) -> None:
        """Stop every actor (at shutdown): their state is already committed."""
        self._closed.set()
        with self._lock:
            refs = [e.ref for e in self._entries.values()]
            self._entries.clear()
        _stop_all(refs)


def _stop_all(refs: list[pykka.ActorRef[Any]]) -> None:
    for ref in refs:
        try:
            ref.stop(block=True, timeout=10)
        except pykka.ActorDeadError:
            pass
        except pykka.Timeout:
            logger.warning("actor %s did not stop within 10 s", ref)
