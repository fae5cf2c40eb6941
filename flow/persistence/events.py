"""Event triggers in the database: the ``trigger_events`` (``events`` is the workflows' history), ``event_windows`` and
``event_starts`` tables (migration 0020) and every read and write of them (docs/design.md, "Event triggers").

An event is stored in the same transaction that adds it to the windows of the triggers it matches and writes the
starts it owes (:meth:`EventTable.receive`): either all of it is durable or none, and a resent id finds the stored
event and changes nothing. A window closed by time is moved into ``event_starts`` by the engine holding its
partition (:meth:`EventTable.close`), in one transaction that re-reads the window, so a window that a later event
stretched is not closed early. A start row names its workflow's id
(:func:`flow.core.event_triggers.window_workflow_id`), so starting it twice finds the first workflow: each window
starts one workflow, once."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from flow.core.event_triggers import (
    Event,
    EventTrigger,
    Match,
    Miss,
    Window,
    add,
    has_closed,
    outgrows,
    window_slot,
    window_workflow_id,
    workflow_input,
)
from flow.core.timestamps import iso
from flow.errors import IdempotencyConflict, StoreUnavailable
from flow.persistence.compiled import CompiledSelect
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.models import JSONText, WorkflowRecord, _Model


class EventRecord(_Model):
    """An event received, with what it started (``outcome``)."""

    id = peewee.CharField(max_length=200, primary_key=True)
    namespace = peewee.CharField(max_length=63, default="default")  # its sender's (migration 0024)
    type = peewee.CharField(max_length=128)
    data = JSONText()
    #: ``partition_of(id)``: its partition's engine prunes it after FLOW_EVENT_DEDUP_S.
    partition = peewee.IntegerField()
    received_at = peewee.DateTimeField()
    #: ``{"matched": [...], "missed": [...], "reason": ...}`` (see :func:`_outcome`).
    outcome = JSONText()

    class Meta:
        table_name = "trigger_events"
        indexes = ((("received_at", "id"), False), (("partition", "received_at"), False))


class EventWindowRecord(_Model):
    """The open window of one (definition, trigger, key)."""

    slot = peewee.CharField(max_length=36, primary_key=True)
    workflow_id = peewee.CharField(max_length=36)
    definition = peewee.CharField(max_length=128)
    trigger_index = peewee.IntegerField()
    key = peewee.CharField(max_length=255)
    #: ``partition_of(slot)``: its partition's engine closes it.
    partition = peewee.IntegerField()
    opened_at = peewee.DateTimeField()
    closes_at = peewee.DateTimeField()
    count = peewee.IntegerField()
    inputs = JSONText()

    class Meta:
        table_name = "event_windows"
        indexes = ((("partition", "closes_at"), False),)


class EventStartRecord(_Model):
    """A workflow owed by a closed window, until it exists (or cannot: ``error``)."""

    workflow_id = peewee.CharField(max_length=36, primary_key=True)
    definition = peewee.CharField(max_length=128)
    trigger_index = peewee.IntegerField()
    input_data = JSONText()
    partition = peewee.IntegerField()
    created_at = peewee.DateTimeField()
    #: When the engine starts it if nobody did (None: it failed for good, see ``error``).
    due_at = peewee.DateTimeField(null=True)
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "event_starts"
        indexes = ((("partition", "due_at"), False),)


@dataclass(frozen=True)
class OwedStart:
    """A workflow a closed window owes."""

    workflow_id: str
    definition: str
    trigger_index: int
    input_data: dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    """An event row, read."""

    id: str
    type: str
    data: dict[str, Any]
    received_at: datetime
    outcome: dict[str, Any]


@dataclass(frozen=True)
class Received:
    """What :meth:`EventTable.receive` did: the stored event, whether a resend, the starts it owes (to run now)."""

    event: StoredEvent
    duplicate: bool
    starts: tuple[OwedStart, ...] = ()


def _stored(row: EventRecord) -> StoredEvent:
    return StoredEvent(row.id, row.type, row.data or {}, row.received_at, row.outcome or {})


def _window(row: EventWindowRecord) -> Window:
    return Window(row.opened_at, row.closes_at, tuple(row.inputs), row.count)


_W, _S = EventWindowRecord, EventStartRecord  # the engine's passes, four a second: compiled once per shape
_DUE_WINDOWS = CompiledSelect(
    "due event windows",
    lambda held, now, limit: (
        _W.select(_W.slot).where(_W.partition.in_(held) & (_W.closes_at <= now)).order_by(_W.closes_at).limit(limit)
    ).tuples(),
)
_OWED = CompiledSelect(
    "owed event starts",
    lambda held, now, limit: (
        _S.select().where(_S.partition.in_(held) & (_S.due_at <= now)).order_by(_S.due_at).limit(limit)
    ),
)


class EventTable:
    """Every read and write of events, windows and owed starts, on one Peewee database."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database

    def __repr__(self) -> str:
        return f"<EventTable {type(self.database).__name__}>"

    # -- the doors' side ---------------------------------------------------------------------

    def receive(
        self,
        event: Event,
        matched: Sequence[Match | Miss],
        *,
        now: datetime,
        dedup_s: float,
        start_grace_s: float,
        partition_of: Callable[[str], int],
        reason: str | None = None,
        max_input_bytes: int | None = None,
        namespace: str = "default",
    ) -> Received:
        """Store ``event`` with what its triggers make of it (``matched``; ``reason``: why
        no trigger listens), in one transaction; a resent id within ``dedup_s`` changes
        nothing. The starts it owes are due ``start_grace_s`` later: the door runs them
        at once, the partition's engine if the door did not; ``max_input_bytes``: most JSON
        a batch's input may hold. The id with other type or data: IdempotencyConflict."""
        for _ in range(3):
            try:
                with write(self.database):
                    found = EventRecord.get_or_none(EventRecord.id == event.id)
                    if found is not None and found.received_at > now - timedelta(seconds=dedup_s):
                        if found.namespace != namespace:  # an id names one event in the deployment
                            raise IdempotencyConflict(f"event id {event.id!r} was used already; send a new id")
                        if found.type != event.type or (found.data or {}) != dict(event.data):
                            raise IdempotencyConflict(  # the id names one event, as a key names one start
                                f"event {event.id!r} was received at {iso(found.received_at)} with another type or "
                                "data; an id names one event: send a new event with a new id"
                            )
                        return Received(_stored(found), duplicate=True)
                    if found is not None:  # remembered past the window, not pruned yet: a new event
                        EventRecord.delete().where(EventRecord.id == event.id).execute()
                    starts: list[OwedStart] = []
                    outcome = self._outcome(
                        event, matched, now=now, partition_of=partition_of, starts=starts, max_bytes=max_input_bytes
                    )
                    if reason is not None:
                        outcome["reason"] = reason
                    EventRecord.insert(
                        id=event.id,
                        namespace=namespace,
                        type=event.type,
                        data=dict(event.data),
                        partition=partition_of(event.id),
                        received_at=now,
                        outcome=outcome,
                    ).execute()
                    self._owe(starts, now=now, due_at=now + timedelta(seconds=start_grace_s), partition_of=partition_of)
                    stored = StoredEvent(event.id, event.type, dict(event.data), now, outcome)
                    return Received(stored, duplicate=False, starts=tuple(starts))
            except peewee.IntegrityError:
                continue  # the same id, or a window of the same slot, written concurrently: read again
        raise StoreUnavailable(f"event {event.id!r} could not be stored for concurrent writes of it; send it again")

    def _outcome(
        self,
        event: Event,
        matched: Sequence[Match | Miss],
        *,
        now: datetime,
        partition_of: Callable[[str], int],
        starts: list[OwedStart],
        max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Add the event to the windows of the triggers it matched (the starts of those
        that closed appended to ``starts``); what it started and what it missed, as stored."""
        outcome: dict[str, Any] = {"matched": [], "missed": []}
        for item in matched:
            trigger = item.trigger
            where = {"definition": trigger.definition, "trigger": trigger.index, "mode": trigger.mode.value}
            if isinstance(item, Miss):
                outcome["missed"].append({**where, "reason": item.reason})
                continue
            workflow_id, closes_at = self._add(
                event, item, now=now, partition_of=partition_of, starts=starts, max_bytes=max_bytes
            )
            outcome["matched"].append({**where, "key": item.key, "workflow_id": workflow_id, "closes_at": closes_at})
        return outcome

    def _add(
        self,
        event: Event,
        item: Match,
        *,
        now: datetime,
        partition_of: Callable[[str], int],
        starts: list[OwedStart],
        max_bytes: int | None = None,
    ) -> tuple[str, str | None]:
        """Add the event to its trigger's window; ``(its workflow id, when the window
        closes)`` (None: closed now, the start is appended to ``starts``)."""
        trigger = item.trigger
        slot = window_slot(trigger, item.key)
        query = EventWindowRecord.select().where(EventWindowRecord.slot == slot)
        row = (query.for_update() if is_postgres(self.database) else query).first()
        held = None if row is None else _window(row)
        if held is not None and (has_closed(held, now) or outgrows(trigger, held, item.input, max_bytes)):
            # Its time has come and its engine has not closed it yet, or a batch would outgrow
            # a workflow's input with this event: it starts as it is; this event opens the next.
            starts.append(
                OwedStart(row.workflow_id, trigger.definition, trigger.index, workflow_input(trigger, row.inputs))
            )
            EventWindowRecord.delete().where(EventWindowRecord.slot == slot).execute()
            row = None
        workflow_id = row.workflow_id if row is not None else window_workflow_id(event.id, now, trigger)
        still_open, closed = add(trigger, None if row is None else _window(row), item.input, now)
        if closed is not None:
            starts.append(
                OwedStart(workflow_id, trigger.definition, trigger.index, workflow_input(trigger, closed.inputs))
            )
        if still_open is None:
            if row is not None:
                EventWindowRecord.delete().where(EventWindowRecord.slot == slot).execute()
            return workflow_id, None
        inputs = [dict(given) for given in still_open.inputs]
        columns = {"closes_at": still_open.closes_at, "count": still_open.count, "inputs": inputs}
        if row is None:
            EventWindowRecord.insert(
                slot=slot,
                workflow_id=workflow_id,
                definition=trigger.definition,
                trigger_index=trigger.index,
                key=item.key,
                partition=partition_of(slot),
                opened_at=still_open.opened_at,
                **columns,
            ).execute()
        else:
            EventWindowRecord.update(**columns).where(EventWindowRecord.slot == slot).execute()
        return workflow_id, iso(still_open.closes_at)

    def _owe(
        self,
        starts: Iterable[OwedStart],
        *,
        now: datetime,
        due_at: datetime | None,
        partition_of: Callable[[str], int],
        error: str | None = None,
    ) -> None:
        rows = [
            {
                "workflow_id": s.workflow_id,
                "definition": s.definition,
                "trigger_index": s.trigger_index,
                "input_data": s.input_data,
                "partition": partition_of(s.workflow_id),
                "created_at": now,
                "due_at": due_at,
                "error": error,
            }
            for s in starts
        ]
        if rows:
            EventStartRecord.insert_many(rows).on_conflict_ignore().execute()

    def get(self, event_id: str) -> StoredEvent | None:
        with unit_of_work(self.database):
            row = EventRecord.get_or_none(EventRecord.id == event_id)
            return None if row is None else _stored(row)

    def recent(
        self, *, before: tuple[datetime, str] | None = None, limit: int = 50, namespace: str = "default"
    ) -> builtins.list[StoredEvent]:
        """``namespace``'s events newest first: those before ``(received_at, id)`` (keyset paging)."""
        with unit_of_work(self.database):
            query = EventRecord.select().where(EventRecord.namespace == namespace)
            query = query.order_by(EventRecord.received_at.desc(), EventRecord.id.desc())
            if before is not None:
                at, event_id = before
                query = query.where(
                    (EventRecord.received_at < at) | ((EventRecord.received_at == at) & (EventRecord.id < event_id))
                )
            return [_stored(row) for row in query.limit(limit)]

    def workflows(self, workflow_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What became of each workflow an event led to: its status when it exists, else
        ``owed`` (or ``failed`` to start, with the error) while a start row holds it."""
        ids = sorted(set(workflow_ids))
        if not ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        with unit_of_work(self.database):
            for row in EventStartRecord.select().where(EventStartRecord.workflow_id.in_(ids)):
                found[row.workflow_id] = {"state": "owed" if row.error is None else "failed", "error": row.error}
            query = WorkflowRecord.select(WorkflowRecord.id, WorkflowRecord.status).where(WorkflowRecord.id.in_(ids))
            for workflow_id, status in query.tuples():
                found[workflow_id] = {"state": "started", "status": status}
        return found

    # -- the engine's side -------------------------------------------------------------------

    def due_windows(self, partitions: Iterable[int], *, now: datetime, limit: int = 100) -> builtins.list[str]:
        """Slots of the windows of ``partitions`` that have closed."""
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            return [row[0] for row in _DUE_WINDOWS.rows(self.database, partitions, now, limit)]

    def close(
        self,
        slot: str,
        triggers: Callable[[str, int], EventTrigger | None],
        *,
        now: datetime,
        partition_of: Callable[[str], int],
    ) -> OwedStart | None:
        """Move the window ``slot`` to the owed starts if it has closed (read again in
        this transaction: a later event may have stretched it); its start, or None.
        ``triggers(definition, index)``: the trigger as its definition says now (None:
        gone; the window is then dropped)."""
        with write(self.database):
            query = EventWindowRecord.select().where(EventWindowRecord.slot == slot)
            row = (query.for_update() if is_postgres(self.database) else query).first()
            if row is None or row.closes_at > now:
                return None
            EventWindowRecord.delete().where(EventWindowRecord.slot == slot).execute()
            trigger = triggers(row.definition, row.trigger_index)
            if trigger is None:  # kept as a start that failed, so that its events say why they started nothing
                gone = OwedStart(row.workflow_id, row.definition, row.trigger_index, {})
                why = f"definition {row.definition!r} was deleted or no longer has trigger {row.trigger_index}"
                self._owe([gone], now=now, due_at=None, partition_of=partition_of, error=f"{why}: nothing started")
                return None
            start = OwedStart(row.workflow_id, row.definition, row.trigger_index, workflow_input(trigger, row.inputs))
            self._owe([start], now=now, due_at=now, partition_of=partition_of)
            return start

    def owed(self, partitions: Iterable[int], *, now: datetime, limit: int = 100) -> builtins.list[OwedStart]:
        """The starts of ``partitions`` that are due and have not failed for good."""
        partitions = list(partitions)
        if not partitions:
            return []
        with unit_of_work(self.database):
            rows = _OWED.rows(self.database, partitions, now, limit)
            return [OwedStart(r.workflow_id, r.definition, r.trigger_index, r.input_data or {}) for r in rows]

    def started(self, workflow_id: str) -> None:
        """The workflow of an owed start exists: forget the start."""
        with write(self.database):
            EventStartRecord.delete().where(EventStartRecord.workflow_id == workflow_id).execute()

    def failed(self, workflow_id: str, error: str) -> None:
        """An owed start can never work (its definition is gone, its input refused): kept
        with the reason, for the events that led to it, and never tried again."""
        with write(self.database):
            owed = EventStartRecord.workflow_id == workflow_id
            EventStartRecord.update(due_at=None, error=error).where(owed).execute()

    def try_again_at(self, workflow_id: str, due_at: datetime) -> None:
        """An owed start cannot work yet (its namespace is at its quota): tried at ``due_at``."""
        with write(self.database):
            EventStartRecord.update(due_at=due_at).where(EventStartRecord.workflow_id == workflow_id).execute()

    def prune(self, partitions: Iterable[int], *, before: datetime, limit: int = 1000) -> int:
        """Forget the events of ``partitions`` received before ``before`` (and start rows
        that failed for good as long ago); how many events."""
        partitions = list(partitions)
        if not partitions:
            return 0
        with write(self.database):
            old = (
                EventRecord.select(EventRecord.id)
                .where(EventRecord.partition.in_(partitions) & (EventRecord.received_at < before))
                .limit(limit)
            )
            ids = [row[0] for row in old.tuples()]
            if ids:
                EventRecord.delete().where(EventRecord.id.in_(ids)).execute()
            EventStartRecord.delete().where(
                EventStartRecord.partition.in_(partitions)
                & EventStartRecord.due_at.is_null()
                & (EventStartRecord.created_at < before)
            ).execute()
            return len(ids)


__all__ = ["EventRecord", "EventStartRecord", "EventTable", "EventWindowRecord", "OwedStart", "Received", "StoredEvent"]
