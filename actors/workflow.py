"""``WorkflowActor``: the Pykka actor that owns one running workflow instance."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import pykka

from flow.decide import Decision, decide
from flow.errors import ConcurrentUpdate, WorkflowActorCrashed
from flow.events import Event
from flow.outbox import Outgoing
from flow.state import WorkflowState
from flow.store import Store, utcnow

logger = logging.getLogger(__name__)

#: Turns a decision into the messages it owes (``flow.messages.for_decision``).
Compose = Callable[[Decision, datetime], list[Outgoing]]

#: Reload-and-decide rounds before a contended transition gives up (the event's
#: message is then retried by Dramatiq).
MAX_CONFLICTS = 5


class WorkflowActor(pykka.ThreadingActor):
    """Serialises one workflow's events: load, ``decide``, commit, reply.

    Its memory is a cache of the database: it is dropped whenever a commit fails
    (another engine won, or the database errored), so the next event reloads. The
    reply is the committed :class:`Decision` with the messages it owes (already in the
    outbox); the caller publishes them, which keeps broker connections on the few
    Dramatiq threads rather than one per actor.
    """

    # Daemon threads: a workflow actor must never keep a stopping process alive;
    # its state is already committed, so nothing is lost with it.
    use_daemon_thread = True

    def __init__(self, workflow_id: str, store: Store, compose: Compose) -> None:
        super().__init__()
        self.workflow_id = workflow_id
        self.store = store
        self.compose = compose
        self._state: WorkflowState | None = None
        self._version = 0

    def on_receive(self, message: Event) -> tuple[Decision, list[Outgoing]]:
        try:
            return self.handle(message)
        except Exception:
            raise
        except BaseException as e:
            # Pykka stops every actor in the process on a BaseException; contain it to
            # this workflow's event, which fails and is retried.
            logger.error("%r while handling %r for workflow %s", e, message, self.workflow_id)
            raise WorkflowActorCrashed(f"{type(e).__name__} in workflow {self.workflow_id}: {e}") from e

    def handle(self, event: Event) -> tuple[Decision, list[Outgoing]]:
        """Decide on ``event``; commit the transition with the messages it owes; return both."""
        for _ in range(MAX_CONFLICTS):
            if self._state is None:
                self._state, self._version = self.store.load(self.workflow_id)
            decision = decide(self._state, event)
            now = utcnow()
            owed = self.compose(decision, now)
            try:
                self._version = self.store.commit(self._state, self._version, decision, now=now, outbox=owed)
            except ConcurrentUpdate:
                logger.info("workflow %s changed under us; reloading", self.workflow_id)
                self._state = None
                continue
            except BaseException:
                self._state = None
                raise
            self._state = decision.state
            return decision, owed
        raise ConcurrentUpdate(f"workflow {self.workflow_id}: {MAX_CONFLICTS} conflicting commits in a row")

    def __repr__(self) -> str:
        return f"<WorkflowActor {self.workflow_id}>"
