"""``WorkflowActors``: finds, starts and stops the workflow actors of one engine process.

Each entry holds a workflow's actor and its mailbox. Events are appended to the
mailbox and the actor is woken with one message; the actor takes everything queued
at once and decides on it as one transition, so events that arrive while its last
commit is in flight cost one more commit, not one each (docs/design.md, "Group
commit").

Live actors are bounded (docs/design.md, invariant 7): each is a thread, so an actor that has been
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
from dataclasses import dataclass, field
from typing import Any

import pykka

from flow.loops import BackgroundLoop

logger = logging.getLogger(__name__)

#: The one message an actor is ever told: "your mailbox has something".
DRAIN = "drain"


@dataclass
class Entry:
    """One workflow's actor and mailbox."""

    workflow_id: str
    partition: int
    ref: pykka.ActorRef[Any] | None = None
    mailbox: list[Any] = field(default_factory=list)
    #: Told to drain, or draining: the next arrival needs no new message.
    scheduled: bool = False
    last_used: float = 0.0
    #: Evicted (its partition went elsewhere): the actor takes nothing more.
    closed: bool = False


class WorkflowActors:
    """A ``workflow_id -> Entry`` map with bounded size (Pykka has no lookup by key)."""

    def __init__(
        self,
        factory: Callable[[Entry], pykka.ActorRef[Any]],
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
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._sweeper: BackgroundLoop | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def deliver(self, workflow_id: str, partition: int, item: Any) -> None:
        """Queue ``item`` for the workflow's actor (started if needed) and wake it."""
        surplus: list[Entry] = []
        with self._lock:
            entry = self._entries.get(workflow_id)
            if entry is None or entry.ref is None or not entry.ref.is_alive():
                entry = Entry(workflow_id, partition)
                entry.ref = self._factory(entry)
                self._entries[workflow_id] = entry
                surplus = self._take_surplus()
            else:
                self._entries.move_to_end(workflow_id)
            entry.mailbox.append(item)
            entry.last_used = self._clock()
            wake = not entry.scheduled
            entry.scheduled = True
        if wake:
            entry.ref.tell(DRAIN)
        _stop(surplus, block=False)  # idle ones: nothing to wait for (and this may be the I/O thread)

    def take(self, entry: Entry) -> list[Any]:
        """Everything queued for ``entry`` (called by its actor); empty means "go idle"."""
        with self._lock:
            items, entry.mailbox = entry.mailbox, []
            if entry.closed:
                entry.scheduled = False
                return []
            if not items:
                entry.scheduled = False
            entry.last_used = self._clock()
            return items

    def evict(self, partition: int) -> list[Any]:
        """Stop the actors of ``partition`` once their current transition is committed;
        return what was queued for them and never taken (to hand back)."""
        with self._lock:
            evicted = [e for e in self._entries.values() if e.partition == partition]
            items: list[Any] = []
            for entry in evicted:
                del self._entries[entry.workflow_id]
                entry.closed = True
                items += entry.mailbox
                entry.mailbox = []
        _stop(evicted)
        return items

    def _take_surplus(self) -> list[Entry]:
        """Remove (under the lock) idle entries beyond ``max_live``, oldest first."""
        taken = []
        if len(self._entries) > self._max_live:
            for workflow_id, entry in list(self._entries.items()):
                if len(self._entries) <= self._max_live:
                    break
                if not entry.scheduled and not entry.mailbox:
                    del self._entries[workflow_id]
                    entry.closed = True
                    taken.append(entry)
        return taken

    def stop_idle(self) -> int:
        """Stop every actor idle for ``idle_s`` or more; return how many."""
        deadline = self._clock() - self._idle_s
        with self._lock:
            idle = [e for e in self._entries.values() if not e.scheduled and not e.mailbox and e.last_used <= deadline]
            for entry in idle:
                del self._entries[entry.workflow_id]
                entry.closed = True
        _stop(idle, block=False)
        return len(idle)

    def start_sweeper(self, *, every_s: float | None = None) -> None:
        """Stop idle actors in the background, every ``every_s`` (default ``idle_s / 2``)."""
        interval = every_s or max(self._idle_s / 2, 0.05)
        self._sweeper = BackgroundLoop("workflow-actor-sweeper", self.stop_idle, every_s=interval)
        self._sweeper.start()

    def stop_all(self) -> list[Any]:
        """Stop every actor (their state is committed); return items never taken."""
        if self._sweeper is not None:
            self._sweeper.stopping.set()  # not joined: a sweep may be stopping actors too
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            items: list[Any] = []
            for entry in entries:
                entry.closed = True
                items += entry.mailbox
                entry.mailbox = []
        _stop(entries)
        return items


def _stop(entries: list[Entry], *, block: bool = True) -> None:
    """Stop the entries' actors; ``block`` waits until each has finished its transition."""
    for entry in entries:
        if entry.ref is None:
            continue
        try:
            entry.ref.stop(block=block, timeout=30)
        except pykka.ActorDeadError:
            pass
        except pykka.Timeout:
            logger.warning("actor of workflow %s did not stop within 30 s", entry.workflow_id)
