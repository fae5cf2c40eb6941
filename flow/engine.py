"""The engine shell: turns engine messages into events for workflow actors, then publishes.

Order per event (invariant 1): the actor commits the transition together with the
messages it owes (the outbox), replies, and only then are those messages published.
If a publish fails, its outbox row stays and the outbox loop sends it later.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import dramatiq

from actors.registry import WorkflowActors
from actors.workflow import WorkflowActor
from flow import faults, messages
from flow.commands import Command, RunActivity, StartTimer
from flow.decide import Decision
from flow.definition import Catalog, Definition, parse
from flow.errors import DefinitionNotFound, InvalidInput
from flow.events import Event, WorkflowStarted
from flow.metrics import EngineMetrics
from flow.outbox import Acks, Outgoing, publish
from flow.settings import Settings
from flow.state import ActivityStatus, WorkflowState
from flow.store import Store, utcnow

logger = logging.getLogger(__name__)

#: Namespace for workflow ids derived from a start message's id, so a redelivered
#: start message finds the workflow it already created instead of making another.
_MESSAGE_NAMESPACE = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")


_ENDINGS = frozenset({"workflow-finished", "workflow-failure", "workflow-cancelled"})


class Engine:
    """Everything one engine process needs: store, definitions, actors, broker."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        broker: dramatiq.Broker,
        activity_classes: Mapping[str, type],
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.activity_classes = activity_classes
        self.broker = broker
        self.acks = Acks(store.delete_outbox)
        self.metrics = EngineMetrics()
        self.actors = WorkflowActors(
            lambda workflow_id: WorkflowActor.start(workflow_id, store, self.compose),
            max_live=settings.max_live_actors,
            idle_s=settings.actor_idle_s,
        )
        self._parsed: dict[tuple[str, int], Definition] = {}
        self._synced = False
        self._sync_lock = threading.Lock()
        self._outbox_loop: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"<Engine queue={self.settings.engine_queue} live_actors={len(self.actors)}>"

    # -- creating workflows ---------------------------------------------------------

    # -- definitions ----------------------------------------------------------------

    def sync_definitions(self) -> None:
        """Register the definitions directory's files (a changed file becomes a new version).

        Done once per process, on first need, so that a process can start before
        its database is reachable.
        """
        with self._sync_lock:
            if self._synced:
                return
            for definition in self.catalog:
                version, created = self.store.register_definition(definition)
                if created:
                    logger.info(
                        "registered %s version %d from %s", definition.name, version, self.settings.definitions_dir
                    )
            self._synced = True

    def register(self, body: Any, *, source: str = "<request>") -> tuple[Definition, int, bool]:
        """Validate ``body`` and store it as a new version of its name; ``(definition, version, created)``."""
        definition = parse(body, known_activities=self.activity_classes, source=source)
        self.sync_definitions()
        version, created = self.store.register_definition(definition)
        return definition, version, created

    def definition(self, name: str, version: int | None = None) -> tuple[Definition, int]:
        """The registered definition ``name`` (newest version unless ``version``)."""
        self.sync_definitions()
        found = self.store.definition(name, version)
        if found is None:
            known = [d["name"] for d in self.store.list_definitions()]
            if version is not None and name in known:
                raise DefinitionNotFound(f"{name} version {version}", known)
            raise DefinitionNotFound(name, known)
        found_version, body = found
        key = (name, found_version)
        if key not in self._parsed:
            self._parsed[key] = parse(body, known_activities=self.activity_classes, source=f"{name} v{found_version}")
        return self._parsed[key], found_version

    def create(
        self,
        name: str,
        input_data: Any,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow; ``(state, created)``.

        With ``start`` its start message is stored with it and published, so the
        engine hears of it even if this process dies right after the commit.
        """
        if not isinstance(input_data, Mapping):
            raise InvalidInput("$.input_data", "must be a JSON object")
        size = len(json.dumps(input_data))
        if size > self.settings.max_payload_bytes:
            raise InvalidInput(
                "$.input_data",
                f"is {size} bytes of JSON, over the limit of {self.settings.max_payload_bytes} "
                "(FLOW_MAX_PAYLOAD_BYTES)",
            )
        definition, version = self.definition(name)
        now = utcnow()
        owed: list[Outgoing] = []

        def outbox(new_id: str) -> list[Outgoing]:
            owed.append(messages.start(self.settings, new_id, now=now))
            return owed

        state, created = self.store.create_workflow(
            definition,
            version,
            input_data,
            workflow_id=workflow_id,
            idempotency_key=idempotency_key,
            outbox=outbox if start else None,
        )
        if created:
            self.publish(owed)
        return state, created

    def on_start_message(
        self,
        *,
        workflow_id: str | None = None,
        name: str | None = None,
        input_data: Any = None,
        idempotency_key: str | None = None,
        message_id: str | None = None,
    ) -> WorkflowState:
        """Handle a ``start_workflow`` message: create the workflow if needed, then start it."""
        if name is not None:
            if workflow_id is None and message_id is not None:
                workflow_id = str(uuid.uuid5(_MESSAGE_NAMESPACE, message_id))
            state, _ = self.create(
                name,
                {} if input_data is None else input_data,
                workflow_id=workflow_id,
                idempotency_key=idempotency_key,
                start=False,
            )
            workflow_id = state.id
        if workflow_id is None:
            raise InvalidInput("$.workflow_id", "a start message needs a workflow_id or a name")
        return self.handle(workflow_id, WorkflowStarted(occurred_at=utcnow())).state

    # -- requests from outside ------------------------------------------------------

    def request_cancel(self, workflow_id: str, reason: str | None = None) -> None:
        """Ask the engine to cancel a workflow (from any process; the caller has
        checked that it exists, and an unknown id is dead-lettered anyway)."""
        kwargs: dict[str, Any] = {"workflow_id": workflow_id, **({"reason": reason} if reason else {})}
        self.broker.enqueue(messages.engine_message(self.settings, messages.CANCEL_WORKFLOW, **kwargs))

    def request_retry(self, workflow_id: str) -> None:
        """Ask the engine to run a failed or cancelled workflow again from where it stopped."""
        self.broker.enqueue(messages.engine_message(self.settings, messages.RETRY_WORKFLOW, workflow_id=workflow_id))

    # -- events ---------------------------------------------------------------------

    def handle(self, workflow_id: str, event: Event) -> Decision:
        """Commit the event through the workflow's actor, then publish what it owes."""
        started = time.perf_counter()
        decision, owed = self.actors.ask(workflow_id, event)
        self.metrics.observe_decision(time.perf_counter() - started)
        for entry in decision.history:
            if entry.type in _ENDINGS:
                logger.info(
                    "%s %s: %s",
                    decision.state.name,
                    entry.type,
                    decision.state.error or "ok",
                    extra={"workflow_id": workflow_id},
                )
        if owed:
            faults.inject("after-commit")
        self.publish([o for o in owed if o.send_now])
        return decision

    def compose(self, decision: Decision, now: datetime) -> list[Outgoing]:
        return messages.for_decision(self.settings, decision, now=now)

    def publish(self, owed: list[Outgoing]) -> None:
        """Publish committed messages, then let their outbox rows go.

        A publish the broker does not confirm is logged as an error and its row kept:
        the outbox loop sends it once the broker is back. The transition that owes
        it is committed, so failing the caller would only retry an event that is
        already handled.
        """
        now = utcnow()
        sent = []
        for outgoing in owed:
            try:
                publish(self.broker, outgoing, now=now)
            except Exception as e:
                logger.error(
                    "publishing %s for workflow %s failed (%s); the outbox loop will send it",
                    outgoing.actor_name,
                    outgoing.kwargs.get("workflow_id"),
                    e,
                )
                continue
            sent.append(outgoing.id)
        self.acks.add(sent)

    def resend_in_flight(self) -> int:
        """Send again what each unfinished workflow waits for; return how many workflows.

        For the in-process broker, which loses every message with its process: at
        start the database alone says what is owed. (RabbitMQ keeps its messages,
        and the outbox covers what never reached it.) Duplicates are harmless: every
        handler ignores a stale event.
        """
        now = utcnow()
        count = 0
        for state in self.store.in_progress():
            commands: list[Command] = []
            for a in state.activities:
                if a.status.in_flight:
                    commands.append(RunActivity(a.position, a.attempt))
                elif a.status is ActivityStatus.WAITING_RETRY:
                    commands.append(StartTimer("retry", 0, a.position, a.attempt + 1))
            if state.timeouts.workflow_s:
                remaining_ms = state.timeouts.workflow_s * 1000 - (now - state.created_at).total_seconds() * 1000
                commands.append(StartTimer("workflow", max(0, int(remaining_ms)), None, state.run))
            owed = messages.for_decision(self.settings, Decision(state, tuple(commands)), now=now)
            if not state.started:
                owed.append(messages.start(self.settings, state.id, now=now))
            for outgoing in owed:
                publish(self.broker, outgoing, now=now)
            count += 1
        return count

    # -- the outbox loop ------------------------------------------------------------

    def send_overdue(self) -> int:
        """Send every owed message past its ``send_after``; return how many."""
        claimed = self.store.claim_outbox(now=utcnow(), hold_s=self.settings.outbox_grace_s)
        for outgoing in claimed:
            logger.info("sending owed %s for workflow %s", outgoing.actor_name, outgoing.kwargs.get("workflow_id"))
        self.publish(claimed)
        return len(claimed)

    def start_background(self) -> None:
        """Start the idle-actor sweeper and the outbox loop (at once, then every ``outbox_poll_s``)."""
        self.actors.start_sweeper()

        def loop() -> None:
            while not self._stopping.is_set():
                try:
                    while self.send_overdue() and not self._stopping.is_set():
                        pass
                except Exception:
                    logger.exception("outbox pass failed; will try again")
                self._stopping.wait(self.settings.outbox_poll_s)

        self._outbox_loop = threading.Thread(target=loop, name="flow-outbox", daemon=True)
        self._outbox_loop.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._outbox_loop is not None:
            self._outbox_loop.join(10)
        self.actors.stop_all()
        self.acks.close()
