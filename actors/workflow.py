"""``WorkflowActor``: the Pykka actor that owns one workflow instance in its engine.

The actor loads its workflow once and keeps the state between events: its engine
holds the workflow's partition, so nobody else changes it (docs/design.md,
"Partitions, leases and fencing"). When woken it takes every event queued for it,
folds :func:`flow.core.decide.decide` over them, submits the result as one transition
to the group committer and waits for the commit before it takes anything more —
an actor never decides on a state that is not durable. A refused commit (the
partition changed hands, or the workflow changed under it) drops the state; the
next event reloads it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from actors.registry import Entry
from flow.core.decide import Decision, decide
from flow.core.events import Event
from flow.core.state import WorkflowState
from flow.errors import WorkflowNotFound, is_retryable

if TYPE_CHECKING:
    from actors.registry import WorkflowActors
    from flow.engine.committer import GroupCommitter
    from flow.engine.transport import Delivery
    from flow.persistence.engine_store import EngineStore
    from flow.persistence.records import Transition


class Engine(Protocol):
    """What a workflow actor needs of its engine (:class:`flow.engine.Engine`)."""

    actors: WorkflowActors
    committer: GroupCommitter
    store: EngineStore

    def epoch_of(self, partition: int) -> int | None: ...
    def transition(self, actor: WorkflowActor, items: list[Item], epoch: int) -> tuple[Transition, Any]: ...
    def after_decisions(self, workflow_id: str, decided: Any) -> None: ...
    def give_back(self, items: list[Item]) -> None: ...
    def reject(self, items: list[Item], reason: str) -> None: ...
    def drop(self, items: list[Item], reason: str) -> None: ...
    def fail_workflow(self, workflow_id: str, epoch: int, reason: str) -> None: ...


logger = logging.getLogger(__name__)

#: The longest pause between attempts while the database is unreachable.
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Item:
    """One event for a workflow, and where it came from (to settle it after the commit)."""

    event: Event
    #: The broker delivery that carried it (None for a fired timer or a recovery).
    delivery: Delivery | None = None
    #: The timer that fired it, whose row the transition deletes.
    timer_id: str | None = None


class WorkflowActor(pykka.ThreadingActor):
    """Serialises one workflow's events: decide, commit (grouped with other actors'), go on."""

    # Daemon threads: a workflow actor must never keep a stopping process alive;
    # its state is already committed, so nothing is lost with it.
    use_daemon_thread = True

    def __init__(self, entry: Entry, engine: Engine) -> None:
        super().__init__()
        self.entry = entry
        self.engine = engine
        self.workflow_id = entry.workflow_id
        self.state: WorkflowState | None = None
        self.version = 0
        self.epoch: int | None = None

    def __repr__(self) -> str:
        return f"<WorkflowActor {self.workflow_id}>"

    def on_receive(self, message: Any) -> None:
        while True:
            items = self.engine.actors.take(self.entry)
            if not items:
                return
            try:
                self.handle(items)
            except BaseException as e:  # noqa: BLE001 - contained on purpose
                # Pykka stops every actor of the process on a BaseException: contain it to
                # this workflow; its events go back to the queue and are tried again.
                logger.error("%r while handling events of workflow %s; trying them again", e, self.workflow_id)
                self.state = None
                self.engine.give_back(items)

    def handle(self, items: list[Item]) -> None:
        """Decide on ``items`` and commit them as one transition (see the module docstring)."""
        backoff = 0.05
        while items:
            if self.entry.closed:
                self.engine.give_back(items)
                return
            epoch = self.engine.epoch_of(self.entry.partition)
            if epoch is None:  # the partition is not ours (any more)
                self.state = None
                self.engine.give_back(items)
                return
            try:
                if self.state is None or self.epoch != epoch:
                    self._load(epoch)
                assert self.state is not None
                transition, decided = self.engine.transition(self, items, epoch)
                outcome = self.engine.committer.submit(transition).result()
            except WrongPartition as e:
                self.engine.reject(items, str(e))
                return
            except WorkflowNotFound as e:
                # Deleted (the API, retention) while a message for it was on its way, or
                # never created: there is nothing to decide on (docs/design.md, "Retention").
                self.state = None
                self.engine.drop(items, str(e))
                return
            except Exception as e:
                self.state = None
                if is_retryable(e):
                    logger.warning("workflow %s: %s; trying again in %.2f s", self.workflow_id, e, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                # The engine cannot handle this workflow (unreadable state, data the
                # database refuses): it fails with the reason; the others go on.
                reason = f"the engine cannot handle this workflow: {type(e).__name__}: {e}"
                logger.error("workflow %s: %s", self.workflow_id, reason, exc_info=True)
                self.engine.fail_workflow(self.workflow_id, epoch, reason)
                self.engine.reject(items, reason)
                return
            if not outcome.committed:
                self.state = None  # deliveries were handed back (or dropped, if deleted) by the engine
                return
            self.state, self.version = transition.after, self.version + 1
            self.engine.after_decisions(self.workflow_id, decided)
            return

    def _load(self, epoch: int) -> None:
        loaded = self.engine.store.load(self.workflow_id)
        if loaded.partition != self.entry.partition:
            raise WrongPartition(f"workflow {self.workflow_id} is not in partition {self.entry.partition}")
        # The payload limit is a setting, which a map's output is held to (flow.core.kinds.map);
        # so is the inbox's, which the signals kept are held to (flow.core.kinds.wait).
        settings = self.engine.settings
        state = replace(loaded.state, payload_limit=settings.max_payload_bytes, inbox_limit=settings.max_inbox_bytes)
        self.state, self.version, self.epoch = state, loaded.version, epoch


class WrongPartition(Exception):
    """Raised when a workflow's stored partition is not the one its message came from."""


def fold(state: WorkflowState, items: list[Item]) -> tuple[WorkflowState, list[tuple[Item, Decision]]]:
    """Decide on each item in turn; return the last state and each item's decision."""
    decided = []
    for item in items:
        decision = decide(state, item.event)
        decided.append((item, decision))
        state = decision.state
    return state, decided


def occurred(item: Item) -> datetime:
    return item.event.occurred_at
