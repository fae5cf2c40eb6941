"""Event triggers, the starting side: receive an event from any door (HTTP, the Dramatiq
``flow.send_event`` message, the AMQP exchange ``<prefix>.events``), start what it owes,
and for the engine close windows and run owed starts; the JSON view of an event that the
API, the CLI and the web page show (docs/design.md, "Event triggers").
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from flow.clock import utcnow
from flow.core.event_triggers import Event, EventTrigger, Match, Miss, match
from flow.core.namespaces import DEFAULT
from flow.core.timestamps import iso
from flow.errors import (
    DefinitionNotFound,
    EventNotFound,
    IdempotencyConflict,
    InvalidInput,
    QuotaExceeded,
    is_retryable,
)
from flow.persistence.events import EventTable, OwedStart, Received, StoredEvent
from flow.service.workflows import WorkflowService

logger = logging.getLogger(__name__)


class EventService:
    """The events of one process (its API, its doors, its engine)."""

    def __init__(self, service: WorkflowService) -> None:
        self.service = service
        self.settings = service.settings
        self.table = EventTable(service.store.database)
        #: Each stored definition version's triggers (a dict's single writes are atomic).
        self._triggers: dict[tuple[str, int], tuple[EventTrigger, ...]] = {}

    def __repr__(self) -> str:
        return f"<EventService {self.table!r}>"

    # -- the doors ---------------------------------------------------------------------------

    def send(self, event: Event, *, namespace: str = DEFAULT) -> Received:
        """Store ``event`` with what it starts, then start what is owed now (an immediate
        trigger's workflow, a batch that is full); a resent id starts nothing. Only the
        triggers of ``namespace``'s definitions see it."""
        size = len(json.dumps(dict(event.data)))
        if size > self.settings.max_payload_bytes:
            raise InvalidInput(
                "$.data",
                f"is {size} bytes of JSON, over the limit of {self.settings.max_payload_bytes}"
                " (FLOW_MAX_PAYLOAD_BYTES)",
            )
        owner = self.service.definitions.namespace_of
        triggers = [t for t in self.triggers(event.type) if (owner(t.definition) or DEFAULT) == namespace]
        matched: list[Match | Miss] = match(triggers, event)
        received = self.table.receive(
            event,
            matched,
            now=utcnow(),
            dedup_s=self.settings.event_dedup_s,
            start_grace_s=self.settings.outbox_grace_s,
            partition_of=self.service.partition_of,
            reason=None if triggers else f"no registered definition has a trigger for events of type {event.type!r}",
            max_input_bytes=self.settings.max_payload_bytes,
            namespace=namespace,
        )
        for start in received.starts:
            self.run(start)  # should this fail or the process die, the engine runs it later
        return received

    def get(self, event_id: str) -> StoredEvent:
        found = self.table.get(event_id)
        if found is None:
            raise EventNotFound(event_id)
        return found

    # -- triggers ----------------------------------------------------------------------------

    def triggers(self, event_type: str | None = None) -> list[EventTrigger]:
        """The triggers of the newest version of every registered definition (those of
        ``event_type`` only, when given)."""
        self.service.sync_definitions()
        found = []
        for name, version in self.service.store.newest_definitions():
            triggers = self._triggers.get((name, version))
            if triggers is None:  # a version never changes: parsed once per process
                triggers = self._triggers[(name, version)] = self.service.definition(name, version)[0].triggers
            found += [t for t in triggers if event_type is None or t.event == event_type]
        return found

    def trigger(self, definition: str, index: int) -> EventTrigger | None:
        """Trigger ``index`` of ``definition``'s newest version (None: gone)."""
        try:
            parsed, _ = self.service.definition(definition)
        except DefinitionNotFound:
            return None
        return parsed.triggers[index] if index < len(parsed.triggers) else None

    # -- the engine's side -------------------------------------------------------------------

    def close(self, slot: str) -> OwedStart | None:
        """Close the window ``slot`` if its time has come, and start its workflow."""
        start = self.table.close(slot, self.trigger, now=utcnow(), partition_of=self.service.partition_of)
        if start is not None:
            self.run(start)
        return start

    def run(self, start: OwedStart) -> bool:
        """Start (or find) the workflow an owed start names, then forget the start; False
        when it must be tried again later (the database or broker is away)."""
        try:
            self.service.start(start.definition, dict(start.input_data), workflow_id=start.workflow_id)
        except IdempotencyConflict:
            pass  # the id exists with another input: a workflow was started for it all the same
        except QuotaExceeded as e:
            # Owed until its namespace has room, tried again after the refusal's Retry-After (at
            # each pass, four a second, a hundred owed starts would each count the namespace's
            # running workflows); normal while a namespace is full, so not a warning.
            logger.debug(
                "event start %s of %s waits for its namespace's quota (%s)", start.workflow_id, start.definition, e
            )
            self.table.try_again_at(start.workflow_id, utcnow() + timedelta(seconds=e.retry_after_s))
            return False
        except Exception as e:
            if is_retryable(e):
                logger.warning(
                    "event start %s of %s not made yet (%s); the engine tries again",
                    start.workflow_id,
                    start.definition,
                    e,
                )
                return False
            reason = f"could not start {start.definition}: {e}"
            logger.error("event start %s: %s", start.workflow_id, reason)
            self.table.failed(start.workflow_id, reason)
            return True
        self.table.started(start.workflow_id)
        return True


def event_view(stored: StoredEvent, workflows: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An event as the API shows it; ``workflows``: what :meth:`EventTable.workflows` says
    of the workflows it led to (each match then says ``state``: ``waiting`` while its
    window is open, ``owed``, ``started`` with the workflow's ``status``, or ``failed``)."""
    outcome = stored.outcome
    matched = []
    for item in outcome.get("matched", []):
        seen = dict(item)
        if workflows is not None:
            found = workflows.get(item["workflow_id"])
            seen.update(found or {"state": "waiting" if item.get("closes_at") else "owed"})
        matched.append(seen)
    view: dict[str, Any] = {
        "id": stored.id,
        "type": stored.type,
        "data": stored.data,
        "received_at": iso(stored.received_at),
        "workflows": [m["workflow_id"] for m in matched],
        "matched": matched,
        "missed": outcome.get("missed", []),
    }
    if not matched:
        view["reason"] = outcome.get("reason") or "; ".join(
            f"trigger {m['trigger']} of {m['definition']}: {m['reason']}" for m in outcome.get("missed", [])
        )
    return view


__all__ = ["EventService", "event_view"]
