"""The engine shell: turns engine messages into events for workflow actors, then sends.

Order per event (invariant 1): the actor commits the transition, replies with the
decision, and only then are its commands published. If a publish fails, the
exception fails the Dramatiq message, which is retried.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dramatiq

from actors.registry import WorkflowActors
from actors.workflow import WorkflowActor
from flow import messages
from flow.commands import RunActivity, StartRetryTimer
from flow.decide import Decision
from flow.definition import Catalog
from flow.errors import InvalidInput
from flow.events import Event, WorkflowStarted
from flow.settings import Settings
from flow.state import WorkflowState
from flow.store import Store, utcnow

logger = logging.getLogger(__name__)

#: Namespace for workflow ids derived from a start message's id, so a redelivered
#: start message finds the workflow it already created instead of making another.
_MESSAGE_NAMESPACE = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")


class Engine:
    """Everything one engine process needs: store, definitions, actors, broker."""

    def __init__(self, settings: Settings, store: Store, catalog: Catalog, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.broker = broker
        self.actors = WorkflowActors(
            lambda workflow_id: WorkflowActor.start(workflow_id, store),
            max_live=settings.max_live_actors,
            idle_s=settings.actor_idle_s,
        )
        self._versions: dict[str, int] = {}
        self._versions_lock = threading.Lock()
        self._recovery: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"<Engine queue={self.settings.engine_queue} live_actors={len(self.actors)}>"

    # -- creating workflows ---------------------------------------------------------

    def definition_version(self, name: str) -> int:
        """Version of the catalogue's definition ``name``, registered on first use."""
        with self._versions_lock:
            if name not in self._versions:
                self._versions[name] = self.store.register_definition(self.catalog.get(name))
            return self._versions[name]

    def create(
        self,
        name: str,
        input_data: Any,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow row (not yet started); ``(state, created)``."""
        if not isinstance(input_data, Mapping):
            raise InvalidInput("$.input_data", "must be a JSON object")
        definition = self.catalog.get(name)
        version = self.definition_version(name)
        return self.store.create_workflow(
            definition, version, input_data, workflow_id=workflow_id, idempotency_key=idempotency_key
        )

    def on_start_message(
        self,
        *,
        workflow_id: str | None = None,
        name: str | None = None,
        input_data: Any = None,
        message_id: str | None = None,
    ) -> WorkflowState:
        """Handle a ``start_workflow`` message: create the workflow if needed, then start it."""
        if name is not None:
            if workflow_id is None and message_id is not None:
                workflow_id = str(uuid.uuid5(_MESSAGE_NAMESPACE, message_id))
            state, _ = self.create(name, {} if input_data is None else input_data, workflow_id=workflow_id)
            workflow_id = state.id
        if workflow_id is None:
            raise InvalidInput("$.workflow_id", "a start message needs a workflow_id or a name")
        return self.handle(workflow_id, WorkflowStarted(occurred_at=utcnow())).state

    # -- events ---------------------------------------------------------------------

    def handle(self, workflow_id: str, event: Event) -> Decision:
        """Commit the event through the workflow's actor, then send what it owes."""
        decision: Decision = self.actors.ask(workflow_id, event)
        self.send(decision)
        return decision

    def send(self, decision: Decision) -> None:
        for command in decision.commands:
            if isinstance(command, RunActivity):
                message = messages.run_activity(self.settings, decision.state, command.position, command.attempt)
                self.broker.enqueue(message)
            elif isinstance(command, StartRetryTimer):
                message = messages.engine_message(
                    self.settings,
                    messages.RETRY_DUE,
                    workflow_id=decision.state.id,
                    position=command.position,
                    attempt=command.attempt,
                )
                self.broker.enqueue(message, delay=command.delay_ms)
            else:  # pragma: no cover - a new command type without a sender is a bug
                raise TypeError(f"no sender for {command!r}")

    # -- recovery -------------------------------------------------------------------

    def recover(self, *, older_than_s: float = 30.0) -> int:
        """Re-send the start of workflows created but never started (a lost start message).

        Starting twice is harmless: the second start is recorded and does nothing.
        """
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        ids = self.store.unstarted_workflows(older_than=cutoff)
        for workflow_id in ids:
            logger.warning("workflow %s was created but never started; starting it now", workflow_id)
            self.broker.enqueue(messages.start_workflow(self.settings, workflow_id=workflow_id))
        return len(ids)

    def start_background(self, *, recovery_every_s: float = 60.0) -> None:
        """Start the idle-actor sweeper and the periodic recovery loop."""
        self.actors.start_sweeper()

        def loop() -> None:
            while True:
                try:
                    self.recover()
                except Exception:
                    logger.exception("recovery pass failed; will try again")
                if self._stopping.wait(recovery_every_s):
                    return

        self._recovery = threading.Thread(target=loop, name="flow-recovery", daemon=True)
        self._recovery.start()

    def stop(self) -> None:
        self._stopping.set()
        self.actors.stop_all()
