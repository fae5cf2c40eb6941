"""The starting side, assembled: :class:`WorkflowService` builds its parts and passes
the calls of its callers to them.

The API, the CLI, the AMQP start consumer and the Dramatiq tasks all go through one;
none of them builds an engine. Each part has one role:

- :class:`~flow.service.definitions.Definitions`: the registry of definitions;
- :class:`~flow.service.senders.Senders`: the engine messages, to partition queues;
- :class:`~flow.service.starts.Starter`: creating and starting workflows;
- :class:`~flow.service.controls.Controls`: cancel, signal, pause, resume, retry and rerun
  as a door makes them, refused by the preconditions of :mod:`flow.service.checks`;
- :class:`~flow.service.callbacks.CallbackDoor`: callback tokens;
- :class:`~flow.service.forwarding.SharedQueueDoor`: the shared engine queue's messages.

The methods below are the parts' own, kept under the names callers knew; a caller that
needs one role may take the part instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import dramatiq

from flow.core.callback_tokens import CallbackTokens
from flow.persistence.store import Store
from flow.service import children as child_starts
from flow.service.callbacks import CallbackDoor
from flow.service.catalog import Catalog
from flow.service.controls import Controls
from flow.service.definitions import Definitions
from flow.service.forwarding import SharedQueueDoor
from flow.service.quotas import NamespaceQuotas, read_tokens_file
from flow.service.senders import MESSAGE_NAMESPACE, Senders
from flow.service.starts import Starter
from flow.settings import Settings
from flow.wire import messages

__all__ = ["MESSAGE_NAMESPACE", "WorkflowService"]


class WorkflowService:
    """The starting side's parts, and the calls of its callers passed to them."""

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
        limit = settings.max_payload_bytes
        self.definitions = Definitions(settings, store, catalog, activity_classes)
        self.senders = Senders(settings, store, broker)
        #: The namespaces' quotas, which every start by name must fit (FLOW_TOKENS_FILE).
        self.quotas = NamespaceQuotas(read_tokens_file(settings.tokens_file), store.database)
        self.starter = Starter(store, self.definitions, self.senders, max_payload_bytes=limit, quotas=self.quotas)
        self.controls = Controls(store, self.senders, self.definitions)
        self.callbacks = CallbackDoor(settings, store, self.senders)
        self.door = SharedQueueDoor(store, self.senders, self.callbacks, max_payload_bytes=limit)
        # The calls of the starting side's callers (flow.service.children, schedules,
        # the tasks, embedded, tests), each the method of the part that does it. cancel,
        # signal, pause, resume and retry are the senders' unchecked messages, as they
        # always were here (a child's start cancels or retries the child through them);
        # a door that answers a person uses ``controls``, which checks the preconditions.
        self.sync_definitions = self.definitions.sync
        self.register = self.definitions.register
        self.check_children = self.definitions.check_children
        self.child_versions = self.definitions.child_versions
        self.namespace_of = self.definitions.namespace_of
        self.definition = self.definitions.get
        self.start = self.starter.start
        self.check_input = self.starter.check_input
        self.partition_of = self.senders.partition_of
        self.queue_of = self.senders.queue_of
        self.send_start = self.senders.send_start
        self.cancel = self.senders.cancel
        self.signal = self.senders.signal
        self.pause = self.senders.pause
        self.resume = self.senders.resume
        self.retry = self.senders.retry
        self.rerun = self.senders.rerun  # unchecked: a parent's rerun of its child (flow.service.children)
        self.callback_target = self.callbacks.target
        self.callback = self.callbacks.send
        self.forward = self.door.forward

    def __repr__(self) -> str:
        return f"<WorkflowService {self.store!r}>"

    @property
    def partitions(self) -> int:
        """The partition count fixed in the database (read once)."""
        return self.senders.partitions

    @property
    def callback_tokens(self) -> CallbackTokens:
        """This deployment's callback tokens (:attr:`CallbackDoor.tokens`)."""
        return self.callbacks.tokens

    def start_child(self, request: messages.StartChild) -> None:
        """Create and start (or retry, or report) the child of a parent's activity
        (:mod:`flow.service.children`)."""
        child_starts.start_child(self, request)

    def close(self) -> None:
        """Nothing to flush any more; kept so that every owner of a service can close it."""
