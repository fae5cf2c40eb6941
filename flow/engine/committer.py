"""Group commit: the transitions of many workflow actors, committed in one transaction.

Actors submit a :class:`~flow.persistence.engine_store.Transition` and wait for its
outcome; one committer thread takes everything submitted meanwhile (up to
``max_batch``) and commits it with :meth:`EngineStore.commit_batch`. There is no
fixed delay: while one commit is in flight the next batch gathers, so a quiet
engine commits each transition at once and a busy one commits many per round trip.

After the commit — never before — :attr:`on_committed` acknowledges the deliveries
that caused the batch, publishes what it owes and arms its timers (docs/design.md,
"Group commit").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from flow.errors import StoreUnavailable, is_retryable
from flow.persistence.engine_store import BatchResult, EngineStore, Transition

logger = logging.getLogger(__name__)


@dataclass
class Submitted:
    transition: Transition
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class Outcome:
    """What became of a submitted transition."""

    committed: bool
    #: Why not: ``"fenced"`` or ``"version"``.
    refused: str | None = None


class GroupCommitter:
    """One thread committing batches of transitions (see the module docstring)."""

    def __init__(
        self,
        store: EngineStore,
        *,
        owner: str,
        on_committed: Callable[[list[Transition]], None],
        on_refused: Callable[[list[tuple[Transition, str]]], None] = lambda refused: None,
        max_batch: int = 500,
    ) -> None:
        self.store = store
        self.owner = owner
        self.on_committed = on_committed
        self.on_refused = on_refused
        self.max_batch = max_batch
        self._queue: list[Submitted] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Batches committed and transitions in them (for metrics and the bench).
        self.batches = 0
        self.transitions = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-group-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit what was submitted, then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(30)

    def submit(self, transition: Transition) -> Future:
        """Queue ``transition``; its future resolves to an :class:`Outcome` (or an error)."""
        item = Submitted(transition)
        with self._cv:
            if self._closed:
                item.future.set_exception(StoreUnavailable("the engine is stopping"))
                return item.future
            self._queue.append(item)
            self._cv.notify()
        return item.future

    def _take(self) -> list[Submitted]:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # closed and drained
            self._commit(batch)

    def _commit(self, batch: list[Submitted]) -> None:
        transitions = [s.transition for s in batch]
        try:
            result = self.store.commit_batch(transitions, owner=self.owner)
        except Exception as e:
            if len(batch) > 1 and not is_retryable(e):
                # One transition's data broke the batch: commit them one by one, so
                # that only its workflow pays for it.
                logger.warning("a batch of %d transitions failed (%s); committing them one by one", len(batch), e)
                for item in batch:
                    self._commit([item])
                return
            for item in batch:
                item.future.set_exception(e)
            return
        self._settle(batch, result)

    def _settle(self, batch: list[Submitted], result: BatchResult) -> None:
        committed = [batch[i].transition for i in result.committed]
        self.batches += 1
        self.transitions += len(committed)
        try:
            if committed:
                self.on_committed(committed)
        except Exception:
            # The commit stands; what it owes is in the outbox and its timers in their table.
            logger.exception("after-commit step failed; the outbox and timers will catch up")
        if result.refused:
            try:
                self.on_refused([(batch[i].transition, why) for i, why in result.refused.items()])
            except Exception:
                logger.exception("refused-commit step failed")
        for i in result.committed:
            batch[i].future.set_result(Outcome(True))
        for i, why in result.refused.items():
            batch[i].future.set_result(Outcome(False, why))
