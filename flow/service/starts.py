"""Starting a workflow: create it (one statement), then publish its start to its
partition's queue. Should the process die between the two, the engine holding the
partition finds the workflow unstarted ``FLOW_OUTBOX_GRACE_S`` later and starts it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from flow.core.attributes import check_declared
from flow.core.namespaces import DEFAULT
from flow.core.priority import DEFAULT_PRIORITY
from flow.core.state import WorkflowState
from flow.errors import BrokerBlocked, QuotaExceeded, StartBacklogFull
from flow.persistence.store import Store
from flow.service.checks import check_input
from flow.service.definitions import Definitions
from flow.service.quotas import NamespaceQuotas
from flow.service.senders import MESSAGE_NAMESPACE, Senders


class Starter:
    """Creates workflows from a registered definition and sends their starts."""

    def __init__(
        self,
        store: Store,
        definitions: Definitions,
        senders: Senders,
        *,
        max_payload_bytes: int,
        quotas: NamespaceQuotas | None = None,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.senders = senders
        self.max_payload_bytes = max_payload_bytes
        #: The namespaces' quotas (:mod:`flow.service.quotas`); None: none.
        self.quotas = quotas

    def __repr__(self) -> str:
        return f"<Starter {self.store!r}>"

    def check_input(self, input_data: Any) -> None:
        """Raise :class:`~flow.errors.InvalidInput` unless ``input_data`` can start a workflow."""
        check_input(input_data, max_bytes=self.max_payload_bytes)

    def start(
        self,
        name: str,
        input_data: Any,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        message_id: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        attributes: Mapping[str, Any] | None = None,
        admit: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
        namespace: str | None = None,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow and send its start; ``(state, created)``. ``message_id`` (of a
        start message from a broker) derives the workflow id, so a redelivery finds it.
        ``priority`` (1 first to 5 last) is checked by the door's start request; a repeat
        of an earlier start (same id or key) returns that workflow with its own priority.
        ``attributes``: values of the definition's search attributes (JSON), refused with
        :class:`~flow.errors.InvalidInput` at ``$.attributes.<name>`` unless declared and of
        the declared type, before anything is stored. ``admit``: held while the workflow is
        stored and its start sent, once the request is found valid (the API's intake,
        :mod:`flow.service.intake`, which may refuse it: a repeat of an earlier start is
        answered that workflow instead). ``namespace``: the caller's (None: a trusted door,
        any); a definition it may not see is not found. The workflow belongs to its
        definition's namespace, whose quotas it must fit (:class:`~flow.errors.QuotaExceeded`,
        before anything is stored; a start with an id that exists is answered its workflow)."""
        self.check_input(input_data)
        if workflow_id is None and message_id is not None:
            workflow_id = str(uuid.uuid5(MESSAGE_NAMESPACE, message_id))
        definition, version = self.definitions.get(name, namespace=namespace)
        owner = self.definitions.namespace_of(name) or DEFAULT
        typed = check_declared(definition.attributes, attributes, path="$.attributes")
        child_versions = self.definitions.child_versions(definition)
        try:
            if self.quotas is not None:
                self.quotas.admit(owner)
            with admit():
                state, created = self.store.create_workflow(
                    definition,
                    version,
                    input_data,
                    partition_of=self.senders.partition_of,
                    workflow_id=workflow_id,
                    idempotency_key=idempotency_key,
                    child_versions=child_versions,
                    priority=priority,
                    attributes=typed,
                    namespace=owner,
                )
                if created:
                    self.senders.send_start(state.id)
        except (StartBacklogFull, BrokerBlocked, QuotaExceeded) as e:
            # Refused before anything was stored, for as long as the engines are behind or
            # RabbitMQ blocks. A repeat of an earlier start (its id or key) would store and
            # send nothing: it is answered its workflow. A 429 (this process busy, for a
            # second) stays a refusal without a statement, as cheap as the bound means it;
            # so does a quota's, but for a start that names its id (a broker message's, a
            # schedule's tick, an event's): its redelivery may find the workflow it made.
            if isinstance(e, QuotaExceeded) and workflow_id is None:
                raise
            existing = self.store.find_existing(workflow_id, idempotency_key, definition.name, input_data)
            if existing is None:
                raise
            return existing, False
        return state, created
