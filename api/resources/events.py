"""``/events``: send an event to the definitions' triggers, list recent events, and show
what one started or why nothing (docs/design.md, "Event triggers")."""

from __future__ import annotations

import base64
import json

import falcon

from api.auth import namespace_of
from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Link, Param, Reply, operation
from api.resources.workflows import LIMIT, _int_param
from flow.core.event_triggers import EVENT_SCHEMA, MAX_EVENT_ID_CHARS, parse_event
from flow.core.strict_json import text_problem
from flow.core.timestamps import iso, parse_iso
from flow.errors import EventNotFound
from flow.process.runtime import Runtime
from flow.service.events import event_view

#: The cursor of ``GET /events``: the previous page's ``next``.
CURSOR = Param("cursor", {"type": "string"}, "The `next` of the previous page.")
_LINKS = {"GetEvent": Link("EventResource.on_get", {"event_id": "$response.body#/id"})}


class EventsResource:
    """``POST /events``: an event for the triggers (202); ``GET /events``: the events
    remembered, newest first, a page at a time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Send an event: each trigger it matches starts a workflow (now, or when its debounce or batch "
        "window closes); an id sent again within FLOW_EVENT_DEDUP_S starts nothing",
        body=EVENT_SCHEMA,
        responses={
            202: Reply(
                "Accepted; `Location` names the event; `duplicate` says it was a resend", "TriggerEvent", links=_LINKS
            )
        },
        errors=(409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        event = parse_event(read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes))
        received = self.runtime.events.send(event, namespace=namespace_of(req))
        resp.status = falcon.HTTP_202
        resp.location = f"/events/{event.id}"
        resp.media = {**self._view(received.event), "duplicate": received.duplicate}

    @operation(
        "The events remembered (FLOW_EVENT_DEDUP_S), newest first, with the workflows each started",
        query=(CURSOR, LIMIT),
        responses={200: Reply("A page of events", "TriggerEventPage")},
        errors=(422, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = _int_param(req, LIMIT)
        found = self.runtime.events.table.recent(
            before=_decode_cursor(req.get_param(CURSOR.name)), limit=limit, namespace=namespace_of(req)
        )
        workflows = self.runtime.events.table.workflows(
            m["workflow_id"] for e in found for m in e.outcome.get("matched", [])
        )
        last = found[-1] if len(found) == limit else None
        resp.media = {
            "items": [event_view(e, workflows) for e in found],
            "next": None if last is None else _encode_cursor(iso(last.received_at) or "", last.id),
        }

    def _view(self, stored) -> dict:
        ids = [m["workflow_id"] for m in stored.outcome.get("matched", [])]
        return event_view(stored, self.runtime.events.table.workflows(ids))


class EventResource:
    """``GET /events/{event_id}``: the event, the workflows it started (or will, when
    its window closes) with their status, or why it started none."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "One event and what it started, or why nothing",
        responses={200: Reply("The event", "TriggerEvent")},
        errors=(404, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        if not 0 < len(event_id) <= MAX_EVENT_ID_CHARS or text_problem(event_id):
            raise EventNotFound(event_id)  # no event can have it: not a question for the database
        stored = self.runtime.events.get(event_id)
        ids = [m["workflow_id"] for m in stored.outcome.get("matched", [])]
        resp.media = event_view(stored, self.runtime.events.table.workflows(ids))


def _encode_cursor(received_at: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([received_at, event_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None):
    """``(received_at, id)`` in a cursor; 422 for anything this API did not write."""
    if not cursor:
        return None
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        parsed = parse_iso(at)
        if parsed is None or not isinstance(event_id, str):
            raise ValueError(cursor)
        return parsed, event_id
    except (ValueError, TypeError) as e:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise unprocessable(CURSOR.name, "not a cursor this API returned; pass the 'next' value as is") from e
