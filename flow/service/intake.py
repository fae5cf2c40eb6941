"""The API's intake of starts under load (docs/design.md, "Shedding a flood of starts").

A flood of starts must be refused early and cheaply, with a ``Retry-After``, rather than
taken in until something gives way: threads queued behind a saturated database until
clients time out, or an unbounded pile of workflows the engines have not started yet.
Two bounds, both checked before anything is stored:

- **Starts in flight, per API process** (``FLOW_MAX_STARTS_IN_FLIGHT``): a start takes a
  slot of a semaphore for its store and publish, without waiting for one; with none free
  it is answered 429 at once. The bound sits below gunicorn's threads, so a flood of
  starts leaves threads (and pooled connections) for the reads.
- **The engines' backlog** (``FLOW_MAX_START_BACKLOG``): workflows stored whose start no
  engine has handled yet (``NOT started``, the partial index ``workflows_unstarted``).
  Past it a start is answered 503: the engines are behind (or absent), and taking more
  only makes every accepted start wait longer. The count is read at most every
  :data:`START_BACKLOG_TTL_S` per process, by one thread while the others use the last
  count, and the walk stops at the bound, so its cost does not grow with the backlog;
  this process's own stores since the last read are added to it at once.

Why these and not a rate limit: a rate has to be guessed for each deployment and is
wrong when the engines slow down (a slow database) or stop; the backlog measures what
the engines actually keep up with, and the in-flight bound what this process can work on.
The backlog bound is soft across processes: each adds only its own stores between reads,
so together they may pass it by what the others stored within one period
(processes × start rate × :data:`START_BACKLOG_TTL_S`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from flow.errors import StartBacklogFull, TooManyStarts

#: Seconds one process reuses a count of the backlog.
START_BACKLOG_TTL_S = 0.5
#: ``Retry-After`` of a start refused because the process is busy: its slots free in milliseconds.
BUSY_RETRY_AFTER_S = 1
#: ``Retry-After`` of a start refused because the engines are behind (the API's other 503s say 5).
BACKLOG_RETRY_AFTER_S = 5


class StartIntake:
    """The two bounds of one API process (see the module docstring).

    ``count_unstarted(at_most)`` counts the unstarted workflows up to ``at_most``
    (:meth:`flow.persistence.queries.Queries.unstarted_count`).
    """

    def __init__(
        self,
        count_unstarted: Callable[[int], int],
        *,
        max_in_flight: int,
        max_backlog: int,
        ttl_s: float = START_BACKLOG_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count_unstarted = count_unstarted
        self.max_in_flight = max_in_flight
        self.max_backlog = max_backlog
        self.ttl_s = ttl_s
        self.clock = clock
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()  # the counts below
        self._reading = threading.Lock()  # held by the one thread reading the backlog
        self._counted = 0
        self._counted_at = -math.inf
        #: Starts this process stored, ever; and how many of them the last count saw.
        self._stored = 0
        self._stored_at_count = 0

    def __repr__(self) -> str:
        return f"<StartIntake in flight ≤ {self.max_in_flight}, backlog < {self.max_backlog}>"

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot while the block stores a start; raise :class:`TooManyStarts` when
        none is free, :class:`StartBacklogFull` when the backlog is at its bound."""
        if not self._slots.acquire(blocking=False):
            raise TooManyStarts(
                f"this API process is working on {self.max_in_flight} starts already (FLOW_MAX_STARTS_IN_FLIGHT); "
                f"try again in {BUSY_RETRY_AFTER_S} s",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        try:
            backlog = self.backlog()
            if backlog >= self.max_backlog:
                raise StartBacklogFull(
                    f"{backlog} workflows wait for an engine to start them (FLOW_MAX_START_BACKLOG is "
                    f"{self.max_backlog}); try again in {BACKLOG_RETRY_AFTER_S} s",
                    retry_after_s=BACKLOG_RETRY_AFTER_S,
                )
            yield
        finally:
            self._slots.release()

    def stored(self) -> None:
        """A start admitted here created a workflow: count it until the next read does."""
        with self._lock:
            self._stored += 1

    def backlog(self) -> int:
        """The backlog as last read, plus what this process stored since: read again when
        the last read is older than ``ttl_s``, unless another thread is reading it."""
        if self.clock() - self._counted_at >= self.ttl_s and self._reading.acquire(blocking=False):
            try:
                with self._lock:
                    stored_before = self._stored
                # What is stored while the count runs may be counted twice: an
                # overestimate for one period, on the safe side.
                counted = self.count_unstarted(self.max_backlog)
                with self._lock:
                    self._counted, self._counted_at, self._stored_at_count = counted, self.clock(), stored_before
            finally:
                self._reading.release()
        with self._lock:
            return self._counted + self._stored - self._stored_at_count
