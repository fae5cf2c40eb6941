"""Group commit: the transitions of many workflow actors, committed in one transaction.

Actors submit a :class:`~flow.persistence.engine_store.Transition` and wait for its
outcome. One commit runs at a time: while it is in flight, whatever is submitted
gathers, and the committer thread commits it all (up to ``max_batch``) as soon as
the previous commit is done. There is no fixed delay, so a busy engine commits many
transitions per round trip; and an actor that finds no commit running and nothing
waiting commits its own transition at once in its own thread, so a quiet engine
pays no thread hop either.

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
from typing import Any

from flow.errors import StoreUnavailable, is_retryable
from flow.persistence.engine_store import EngineStore
from flow.persistence.records import BatchResult, Transition

logger = logging.getLogger(__name__)


@dataclass
class Submitted:
    transition: Transition
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class Outcome:
    """What became of a submitted transition."""

    committed: bool
    #: Why not: ``"fenced"``, ``"version"`` or ``"deleted"`` (the workflow no longer exists).
    refused: str | None = None
    #: The transition committed: the one submitted, or the ``at_once`` outcome it carried.
    transition: Any = field(default=None, compare=False)


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
        #: A commit is running (in the committer thread or an actor's).
        self._busy = False
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
        """Commit ``transition`` now if nothing else is committing, else queue it; the
        future resolves to an :class:`Outcome` (or an error)."""
        item = Submitted(transition)
        with self._cv:
            if self._closed:
                item.future.set_exception(StoreUnavailable("the engine is stopping"))
                return item.future
            inline = not self._busy and not self._queue
            if inline:
                self._busy = True
            else:
                self._queue.append(item)
                self._cv.notify()
        if inline:
            try:
                self._commit([item])
            finally:
                self._done()
        return item.future

    def _done(self) -> None:
        with self._cv:
            self._busy = False
            self._cv.notify_all()

    def _take(self) -> list[Submitted]:
        with self._cv:
            while (not self._queue or self._busy) and not self._closed:
                self._cv.wait()
            while self._busy:  # closing: let a commit in an actor's thread finish first
                self._cv.wait()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._busy = bool(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # closed and drained
            try:
                self._commit(batch)
            finally:
                self._done()

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
        let_in = set(result.let_in)
        written = {
            i: (batch[i].transition.at_once if i in let_in else None) or batch[i].transition for i in result.committed
        }
        committed = list(written.values())
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
            batch[i].future.set_result(Outcome(True, transition=written[i]))
        for i, why in result.refused.items():
            batch[i].future.set_result(Outcome(False, why))
