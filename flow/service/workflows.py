"""The starting side: definitions, and starting, cancelling and retrying workflows.

The API, the CLI, the AMQP start consumer and the Dramatiq start message all go
through a :class:`WorkflowService`; none of them builds an engine. A start creates
the workflow (one statement), then publishes its start message to the workflow's
partition queue; if that publish is lost, the engine holding the partition finds
the workflow unstarted ``FLOW_OUTBOX_GRACE_S`` later and starts it anyway. Cancel
and retry are messages to the partition's queue too.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import dramatiq

from flow.core import strict_json
from flow.core.callback_tokens import CallbackTarget, CallbackTokens
from flow.core.definition import Definition, parse
from flow.core.kinds import child as children
from flow.core.kinds import wait
from flow.core.partitions import partition_of, partition_queue
from flow.core.state import WorkflowState
from flow.core.strict_json import json_path
from flow.core.vocabulary import ActivityStatus
from flow.errors import (
    CallbackTokenSpent,
    DefinitionError,
    DefinitionNotFound,
    IdempotencyConflict,
    InboxFull,
    InvalidInput,
    StoreUnavailable,
    UnknownCallbackToken,
    WorkflowNotFound,
)
from flow.persistence.schema import check_partitions
from flow.persistence.store import Store
from flow.service import children as child_starts
from flow.service.catalog import Catalog
from flow.settings import Settings
from flow.wire import messages

logger = logging.getLogger(__name__)

#: Namespace for workflow ids derived from a start message's id, so a redelivered
#: start message finds the workflow it already created instead of making another.
MESSAGE_NAMESPACE = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")


class WorkflowService:
    """Definitions and the requests that start, cancel or retry workflows."""

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
        self.broker = broker
        self.activity_classes = activity_classes
        self._partitions: int | None = None
        self._parsed: dict[tuple[str, int], Definition] = {}
        self._lock = threading.Lock()
        self._synced = False

    def __repr__(self) -> str:
        return f"<WorkflowService {self.store!r}>"

    @property
    def partitions(self) -> int:
        """The partition count fixed in the database (read once)."""
        if self._partitions is None:
            self._partitions = check_partitions(self.store.partitions(), self.settings.partitions)
        return self._partitions

    def partition_of(self, workflow_id: str) -> int:
        return partition_of(workflow_id, self.partitions)

    def queue_of(self, workflow_id: str) -> str:
        """The partition queue of ``workflow_id``."""
        return partition_queue(self.settings.queue_prefix, self.partition_of(workflow_id))

    # -- definitions ----------------------------------------------------------------

    def sync_definitions(self) -> None:
        """Register the definitions directory's files (a changed file becomes a new version).

        Done once per process, on first need, so that a process can start before its
        database is reachable.
        """
        with self._lock:
            if self._synced:
                return
            left_out = True
            while left_out:  # leaving one out may leave out a file that runs it
                left_out = False
                for definition in list(self.catalog):
                    source = self.catalog.source_of(definition.name)
                    try:
                        self.check_children(definition, source=source)
                    except DefinitionError as e:  # e.g. its child's only version was deleted
                        self.catalog.leave_out(source, definition.name, e)
                        left_out = True
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
        self.check_children(definition, source=source)
        version, created = self.store.register_definition(definition)
        return definition, version, created

    def check_children(self, definition: Definition, *, source: str) -> None:
        """Refuse a definition whose children are unknown or reach it again (the
        definitions directory's files count as the newest of their names)."""

        def lookup(name: str, version: int | None) -> Any:
            if version is None and name in self.catalog.names():
                return self.catalog.get(name).body
            found = self.store.definition(name, version)
            return found[1] if found else None

        problems = children.cycle_problems(
            definition.body, lookup, lambda index, *keys: json_path(["activities", index, *keys])
        )
        if problems:
            raise DefinitionError(source, problems)

    def child_versions(self, definition: Definition) -> dict[str, int]:
        """The newest version of each child definition that ``definition`` runs without
        ``version``: a child runs the newest at its parent's start."""
        versions = {}
        for name in children.unpinned([step.spec for step in definition.activities]):
            found = self.store.definition_version(name)
            if found is not None:
                versions[name] = found
        return versions

    def definition(self, name: str, version: int | None = None) -> tuple[Definition, int]:
        """The registered definition ``name`` (newest version unless ``version``)."""
        self.sync_definitions()
        found_version = self.store.definition_version(name, version)
        if found_version is not None:
            with self._lock:
                parsed = self._parsed.get((name, found_version))
            if parsed is not None:
                return parsed, found_version  # versions never change: the parse is cached
        found = self.store.definition(name, found_version) if found_version is not None else None
        if found is None:
            known = [d["name"] for d in self.store.list_definitions()]
            if version is not None and name in known:
                raise DefinitionNotFound(f"{name} version {version}", known)
            raise DefinitionNotFound(name, known, hint=self.catalog.missing)
        found_version, body = found
        parsed = parse(body, known_activities=self.activity_classes, source=f"{name} v{found_version}")
        with self._lock:
            self._parsed[(name, found_version)] = parsed
        return parsed, found_version

    # -- requests ----------------------------------------------------------------------

    def start(
        self,
        name: str,
        input_data: Any,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        message_id: str | None = None,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow and send its start; ``(state, created)``.

        Should this process die between the commit and the publish, the engine holding
        the workflow's partition finds it unstarted and starts it. ``message_id`` (of a
        start message from a broker) derives the workflow id, so a redelivery finds it.
        """
        self.check_input(input_data)
        if workflow_id is None and message_id is not None:
            workflow_id = str(uuid.uuid5(MESSAGE_NAMESPACE, message_id))
        definition, version = self.definition(name)
        state, created = self.store.create_workflow(
            definition,
            version,
            input_data,
            partition_of=self.partition_of,
            workflow_id=workflow_id,
            idempotency_key=idempotency_key,
            child_versions=self.child_versions(definition),
        )
        if created:
            self.send_start(state.id)
        return state, created

    def check_input(self, input_data: Any) -> None:
        """Raise :class:`InvalidInput` unless ``input_data`` can start a workflow."""
        if not isinstance(input_data, Mapping):
            raise InvalidInput("$.input_data", "must be a JSON object")
        self.check_payload("$.input_data", input_data)

    def check_payload(self, path: str, value: Any) -> None:
        """Refuse a value over ``FLOW_MAX_PAYLOAD_BYTES`` of JSON, naming the limit."""
        size = len(json.dumps(value))
        if size > self.settings.max_payload_bytes:
            raise InvalidInput(
                path,
                f"is {size} bytes of JSON, over the limit of {self.settings.max_payload_bytes} "
                "(FLOW_MAX_PAYLOAD_BYTES)",
            )

    def send_start(self, workflow_id: str) -> None:
        """Tell the engine to start a created workflow (should the publish be lost, the
        engine holding its partition finds it unstarted and starts it anyway)."""
        try:
            self.broker.enqueue(messages.StartWorkflow(workflow_id=workflow_id).to_message(self.queue_of(workflow_id)))
        except Exception as e:
            logger.error(
                "publishing the start of workflow %s failed (%s); its engine will start it within FLOW_OUTBOX_GRACE_S",
                workflow_id,
                e,
            )

    def cancel(self, workflow_id: str, reason: str | None = None) -> None:
        """Ask the engine to cancel a workflow."""
        cancel = messages.CancelWorkflow(workflow_id=workflow_id, reason=reason or None)
        self.broker.enqueue(cancel.to_message(self.queue_of(workflow_id)))

    def signal(self, workflow_id: str, name: str, payload: Any, *, idempotency_key: str | None = None) -> str:
        """Send a signal to a workflow; its id (the same for the same idempotency key).
        :class:`IdempotencyConflict` when the key came with another payload already;
        :class:`InboxFull` when no step waits for it and keeping it would pass
        ``FLOW_MAX_INBOX_BYTES`` (the engine holds both rules too, for sends that race)."""
        self.check_payload("$.payload", payload)
        key = f"{workflow_id}:{name}:{idempotency_key}"
        signal_id = str(uuid.uuid5(MESSAGE_NAMESPACE, key)) if idempotency_key else str(uuid.uuid4())
        size, digest = wait.payload_digest(payload)
        kept, seen, earlier = self.store.inbox_of(workflow_id, signal_id)
        if seen and earlier is not None and earlier != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} sent signal {name!r} to workflow {workflow_id} "
                "with another payload already"
            )
        full = None if seen else wait.inbox_full(self.settings.max_inbox_bytes, kept, size)
        if full is not None and wait.waiting_for(self.store.get(workflow_id).state, name) is None:
            raise InboxFull(f"workflow {workflow_id}: {full}")
        message = messages.SignalWorkflow(workflow_id=workflow_id, name=name, signal_id=signal_id, payload=payload)
        self.broker.enqueue(message.to_message(self.queue_of(workflow_id)))
        return signal_id

    @functools.cached_property
    def callback_tokens(self) -> CallbackTokens:
        """This deployment's callback tokens: signed with ``FLOW_SECRET_KEY``, else with the
        secret ``flow migrate`` stored (read once, when first needed)."""
        secret = self.settings.secret_key or self.store.secret()
        if not secret:
            raise StoreUnavailable("the database has no callback token secret yet: run `flow migrate`")
        return CallbackTokens(secret.encode())

    def callback_target(self, token: str) -> CallbackTarget:
        """The wait ``token`` names; :class:`UnknownCallbackToken` if it is not a token of ours."""
        target = self.callback_tokens.read(token)
        if target is None:
            raise UnknownCallbackToken()
        return target

    def callback(self, target: CallbackTarget, payload: Any) -> str:
        """Send the signal of a callback token to the wait it names, for that wait in that
        run only; the signal's name. Every send of one token is the same signal (its id is
        the step's), so the engine takes it once, however many are sent, concurrently or
        not. :class:`CallbackTokenSpent` once the wait or its workflow has ended."""
        self.check_payload("$.payload", payload)
        try:
            state = self.store.get(target.workflow_id).state
        except WorkflowNotFound:
            raise CallbackTokenSpent("the workflow of this callback token no longer exists") from None
        step = state.activity(target.position)
        signal = wait.waits_for(step) if step is not None else None
        if step is None or signal is None:
            raise UnknownCallbackToken()
        if state.status.ended:
            raise CallbackTokenSpent(f"workflow {state.id} is {state.status}: its callback tokens are spent")
        if target.run != state.run:
            raise CallbackTokenSpent(f"this token is of run {target.run}; workflow {state.id} is on run {state.run}")
        if step.status.ended:
            raise CallbackTokenSpent(f"wait {step.id} has ended ({step.status}): its callback token is spent")
        if step.status is not ActivityStatus.WAITING:  # kept for its wait, so bounded like any kept signal
            kept, seen, _ = self.store.inbox_of(state.id, target.signal_id)
            full = None if seen else wait.inbox_full(self.settings.max_inbox_bytes, kept, len(json.dumps(payload)))
            if full is not None:
                raise InboxFull(f"workflow {state.id}: {full}")
        message = messages.SignalWorkflow(
            workflow_id=state.id,
            name=signal,
            signal_id=target.signal_id,
            payload=payload,
            position=target.position,
            run=target.run,
        )
        self.broker.enqueue(message.to_message(self.queue_of(state.id)))
        return signal

    def pause(self, workflow_id: str) -> None:
        """Ask the engine to pause a workflow: nothing new is scheduled until it resumes."""
        self.broker.enqueue(messages.PauseWorkflow(workflow_id=workflow_id).to_message(self.queue_of(workflow_id)))

    def resume(self, workflow_id: str) -> None:
        """Ask the engine to let a paused workflow go on."""
        self.broker.enqueue(messages.ResumeWorkflow(workflow_id=workflow_id).to_message(self.queue_of(workflow_id)))

    def retry(self, workflow_id: str, *, run: int | None = None) -> None:
        """Ask the engine to run a failed or cancelled workflow again from where it stopped
        (``run``: as that run, for a parent retrying its child)."""
        retry = messages.RetryWorkflow(workflow_id=workflow_id, run=run)
        self.broker.enqueue(retry.to_message(self.queue_of(workflow_id)))

    def start_child(self, request: messages.StartChild) -> None:
        """Create and start (or retry, or report) the child of a parent's activity
        (:mod:`flow.service.children`)."""
        child_starts.start_child(self, request)

    def forward(self, message: dramatiq.Message[Any]) -> None:
        """Send an engine message that reached the shared queue on to its partition's queue."""
        if message.actor_name == messages.SIGNAL_WORKFLOW and "token" in message.kwargs:
            self._callback_message(message)
            return
        workflow_id = message.kwargs.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise WorkflowNotFound(str(workflow_id))
        if message.actor_name == messages.SIGNAL_WORKFLOW:
            message = self._checked_signal(message)
        self.broker.enqueue(message.copy(queue_name=self.queue_of(workflow_id)))

    def _checked_signal(self, message: dramatiq.Message[Any]) -> dramatiq.Message[Any]:
        """A signal from the Dramatiq door, read as strictly as the API reads one (a name a
        wait can have, strict JSON within the payload limit); without a ``signal_id``, the
        message's id names it, so a redelivery is recognised."""
        name = message.kwargs.get("name")
        if not isinstance(name, str) or not wait.is_signal_name(name):
            raise InvalidInput("$.name", f"must match {wait.NAME_PATTERN}")
        payload = message.kwargs.get("payload")
        strict_json.check(payload, path="$.payload")
        self.check_payload("$.payload", payload)
        if "signal_id" in message.kwargs:
            return message
        return message.copy(kwargs={**message.kwargs, "signal_id": message.message_id})

    def _callback_message(self, message: dramatiq.Message[Any]) -> None:
        """``flow.signal_workflow`` with ``{"token", "payload"}``: a callback by its token.
        A token that is not ours, or any other field, is dead-lettered; a spent one (a
        redelivery after it was taken, or too late) is logged and dropped."""
        unknown = message.kwargs.keys() - {"token", "payload", messages.VERSION_KEY}
        if unknown:
            raise InvalidInput(f"$.{sorted(unknown)[0]}", "a signal by callback token has token and payload only")
        payload = message.kwargs.get("payload")
        strict_json.check(payload, path="$.payload")
        target = self.callback_target(message.kwargs["token"])
        try:
            self.callback(target, payload)
        except CallbackTokenSpent as e:
            logger.warning("callback message %s dropped: %s", message.message_id, e)

    def close(self) -> None:
        """Nothing to flush any more; kept so that every owner of a service can close it."""
