"""``/workflows``: start, list, show one, and its event history."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import falcon

from api.auth import namespace_of, owner_required
from api.errors import unprocessable
from api.media import has_body, read_json_object
from api.operation import Link, Param, Reply, operation
from api.resources.pools import waiting_pools
from api.schemas import enum
from api.views import event_view, workflow_summary, workflow_view
from flow.core import attributes, priority, start_request, strict_json, validation
from flow.core.definition import NAME_PATTERN
from flow.core.start_request import check_idempotency_key, is_workflow_id, parse_start_request
from flow.core.state import WorkflowStatus
from flow.core.workflow_filter import WorkflowFilter, parse_filter
from flow.errors import InvalidJson, WorkflowNotFound
from flow.persistence.limits import LimitTable
from flow.persistence.mapping import StoredWorkflow
from flow.process.queue_depths import QueueDepths
from flow.process.runtime import Runtime
from flow.service.intake import StartIntake

logger = logging.getLogger(__name__)

#: Page size bounds of the list and events endpoints.
DEFAULT_PAGE, MAX_PAGE = 50, 500
#: Event ids are 64-bit integers.
MAX_EVENT_ID = 2**63 - 1
#: Longest ``input`` filter of the list, in characters of JSON.
MAX_INPUT_FILTER = 4096

_TIMESTAMP = {"type": "string", "format": "date-time"}
STATUS = Param("status", enum(WorkflowStatus))
NAME = Param("name", {"type": "string", "pattern": NAME_PATTERN})
CREATED_AFTER = Param("created_after", _TIMESTAMP, "ISO 8601; naive times are UTC.")
CREATED_BEFORE = Param("created_before", _TIMESTAMP, "ISO 8601; naive times are UTC.")
CURSOR = Param("cursor", {"type": "string"}, "The `next` of the previous page.")
INPUT = Param(
    "input",
    {"type": "string", "maxLength": MAX_INPUT_FILTER},
    'A JSON object the input must contain (as PostgreSQL\'s jsonb @> means it), e.g. {"order_id": 42}.'
    " At most 8 levels deep, 32 elements per array and 128 values.",
)
PARENT_ID = Param(
    "parent_id",
    {"type": "string", "minLength": 1, "maxLength": start_request.MAX_WORKFLOW_ID},
    "Only the children of this workflow (its activities that run a child workflow).",
)
PRIORITY = Param(
    "priority",
    {"type": "integer", "minimum": priority.FIRST_PRIORITY, "maximum": priority.LAST_PRIORITY},
    "Only workflows of this priority (1 first to 5 last).",
)
ATTRIBUTE = Param(
    "attr.{name}",
    {"type": "string"},
    "Search attributes (repeatable, all must hold): `attr.customer=acme` (equal), `attr.amount.gt=100`; "
    "operators eq (default), ne, gt, gte, lt, lte; ne, gt, gte, lt and lte compare numbers and ISO 8601 times. "
    f"At most {attributes.MAX_CONDITIONS} conditions.",
)
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "Page size.")
AFTER = Param(
    "after",
    {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID, "default": 0},
    "The `next` of the previous page.",
)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    start_request.SCHEMA["properties"]["idempotency_key"] | {"type": "string"},
    "Wins over the body's `idempotency_key`: a second start with the same key returns the first workflow (200).",
)

#: The optional body of ``POST /workflows/{id}/cancel``.
CANCEL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"reason": {"type": ["string", "null"], "description": "a string: why it is cancelled"}},
    "examples": [{"reason": "ordered by mistake"}],
}
_CANCEL = validation.validator(CANCEL_SCHEMA)

_WORKFLOW_LINKS = {
    name: Link(operation_id, {"workflow_id": "$response.body#/id"})
    for name, operation_id in [
        ("GetWorkflow", "WorkflowResource.on_get"),
        ("GetActivities", "WorkflowActivitiesResource.on_get"),
        ("GetEvents", "WorkflowEventsResource.on_get"),
        ("Cancel", "WorkflowCancelResource.on_post"),
        ("Retry", "WorkflowRetryResource.on_post"),
    ]
}


def _int_param(req: falcon.Request, param: Param) -> int:
    """An integer query parameter within its schema's bounds; 422 naming it otherwise (as
    for every other invalid parameter; Falcon's own ``get_param_as_int`` would answer 400)."""
    minimum, maximum = param.schema["minimum"], param.schema["maximum"]
    raw = req.get_param(param.name)
    if raw is None:
        return param.schema["default"]
    try:
        # Length first: int() refuses (and first works through) thousands of digits.
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise unprocessable(param.name, f"must be an integer from {minimum} to {maximum}")
    return value


def attribute_conditions(req: falcon.Request) -> tuple[attributes.Condition, ...]:
    """The ``attr.*`` conditions of the query string (422 naming a malformed one): the
    one parser of the attribute filter, for every reader of the workflow filter."""
    pairs = [
        (key, text)
        for key, value in req.params.items()
        if key.startswith(attributes.PREFIX)
        for text in (value if isinstance(value, list) else [value])
    ]
    return attributes.parse_conditions(pairs)


def _known_id(workflow_id: str) -> str:
    """``workflow_id``, or 404 at once for one that no workflow can have (too long, NUL,
    a lone surrogate): such a string must not reach the database, which may refuse it."""
    if not is_workflow_id(workflow_id):
        raise WorkflowNotFound(workflow_id)
    return workflow_id


class WorkflowsResource:
    """``POST /workflows`` starts a workflow (of the request's namespace, within its
    quotas: :mod:`flow.service.quotas`); ``GET /workflows`` lists the namespace's, newest first."""

    def __init__(self, runtime: Runtime, *, intake: StartIntake | None = None) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.intake = intake or StartIntake(
            runtime.store.unstarted_count,
            max_in_flight=settings.max_starts_in_flight,
            max_backlog=settings.max_start_backlog,
        )

    @operation(
        "Start a workflow",
        body=start_request.SCHEMA,
        headers=(IDEMPOTENCY_KEY,),
        responses={
            201: Reply("Created; `Location` names it", "Workflow", links=_WORKFLOW_LINKS),
            200: Reply("An earlier start with the same idempotency key", "Workflow"),
        },
        errors=(409, 429, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        request = parse_start_request(body)
        namespace = namespace_of(req)
        key = request.idempotency_key
        header = req.get_header(IDEMPOTENCY_KEY.name)
        if header is not None:  # the header wins over the body field
            key = check_idempotency_key(header, path=IDEMPOTENCY_KEY.name)
        # Shed (429, 503) only once the request is found valid, before it is stored: a
        # slow or bad one holds no slot, a shed one stored nothing (flow/service/intake.py).
        # One connection for the start and the read of its view: a read on a connection
        # of its own could fail to get one (the server's max_connections) after the start
        # was stored, and a 503 says that nothing was.
        with self.runtime.store.unit_of_work():
            state, created = self.runtime.service.starter.start(
                request.name,
                dict(request.input_data),
                idempotency_key=key,
                priority=request.priority,
                attributes=request.attributes,
                admit=self._admit,
                namespace=namespace,
            )
            if created:
                self.intake.stored()
            row = self.runtime.store.get(state.id)
            limits = LimitTable(self.runtime.store.database)
            resp.media = workflow_view(row, self.runtime.service.callbacks.tokens, limits)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/workflows/{state.id}"

    @contextlib.contextmanager
    def _admit(self) -> Iterator[None]:
        """Held while a start is stored and sent. While RabbitMQ blocks this process's
        publishes, 503 before anything is stored (a client that retries without a key
        would otherwise start the workflow twice); then the intake's bounds. A repeat of
        a keyed start is answered its workflow instead (:meth:`Starter.start`)."""
        self.runtime.service.senders.check_unblocked()
        with self.intake.admit():
            yield

    @operation(
        "List workflows, newest first",
        query=(STATUS, NAME, PARENT_ID, PRIORITY, INPUT, ATTRIBUTE, CREATED_AFTER, CREATED_BEFORE, CURSOR, LIMIT),
        responses={200: Reply("A page of workflows", "WorkflowPage")},
        errors=(422, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = _int_param(req, LIMIT)
        cursor = _decode_cursor(req.get_param(CURSOR.name))
        rows = self.runtime.store.list_workflows(workflow_filter(req), before=cursor, limit=limit)
        items = [workflow_summary(row) for row in rows]
        last = rows[-1].state if rows else None
        next_cursor = _encode_cursor(last.created_at, last.id) if last and len(rows) == limit else None
        resp.media = {"items": items, "next": next_cursor}


class WorkflowResource:
    """``GET /workflows/{id}``: status, input, output, timestamps and every activity;
    ``DELETE`` deletes an ended workflow with its activities, history, timers and owed
    messages (204; 409 while it or a child workflow of it is in progress)."""

    #: The namespace check reads the row ``GET`` loads (:mod:`api.auth`): no owner query.
    owner_checked_on_load = frozenset({"GET"})

    def __init__(self, runtime: Runtime, *, depths: QueueDepths | None = None) -> None:
        self.runtime = runtime
        self.depths = depths

    @operation("A workflow with every activity", responses={200: Reply("The workflow", "Workflow")}, errors=(404, 503))
    def on_get(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        row = self.runtime.store.get(_known_id(workflow_id), namespace=owner_required(req))
        queued = waiting_pools(self.runtime, self.depths, row.state)
        limits = LimitTable(self.runtime.store.database)
        resp.media = workflow_view(
            row, self.runtime.service.callbacks.tokens, limits, queued, history_warn=self.runtime.settings.history_warn
        )

    @operation(
        "Delete an ended workflow with its activities and history",
        responses={204: Reply("Deleted")},
        errors=(404, 409, 503),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        self.runtime.store.delete_workflow(_known_id(workflow_id))
        resp.status = falcon.HTTP_204


class WorkflowActivitiesResource:
    """``GET /workflows/{id}/activities``: every activity with status, attempts, timings, error."""

    owner_checked_on_load = frozenset({"GET"})

    def __init__(self, runtime: Runtime, *, depths: QueueDepths | None = None) -> None:
        self.runtime = runtime
        self.depths = depths

    @operation(
        "A workflow's activities",
        responses={200: Reply("The activities in definition order", "ActivityList")},
        errors=(404, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        row = self.runtime.store.get(_known_id(workflow_id), namespace=owner_required(req))
        queued = waiting_pools(self.runtime, self.depths, row.state)
        view = workflow_view(
            row, self.runtime.service.callbacks.tokens, LimitTable(self.runtime.store.database), queued
        )
        resp.media = {"items": view["activities"]}


class WorkflowCancelResource:
    """``POST /workflows/{id}/cancel``: 202 while the engine cancels it; 409 if it already ended."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Cancel a running workflow",
        body=CANCEL_SCHEMA,
        body_required=False,
        responses={202: Reply("The engine is cancelling it", "Workflow")},
        errors=(404, 409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        _known_id(workflow_id)
        body = {}
        if has_body(req):
            body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
            validation.check(_CANCEL, body)
        _accepted(resp, self.runtime.service.controls.cancel(workflow_id, body.get("reason")))


class WorkflowRetryResource:
    """``POST /workflows/{id}/retry``: run a failed or cancelled workflow again from where it stopped."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Run a failed or cancelled workflow again from where it stopped",
        responses={202: Reply("The engine is retrying it", "Workflow")},
        errors=(404, 409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        _accepted(resp, self.runtime.service.controls.retry(_known_id(workflow_id)))


class WorkflowPauseResource:
    """``POST /workflows/{id}/pause``: 202 while the engine pauses it (nothing new is
    scheduled; what runs finishes); 409 if it ended or is paused already."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Pause a running workflow: nothing new is scheduled until it resumes",
        responses={202: Reply("The engine is pausing it", "Workflow")},
        errors=(404, 409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        _accepted(resp, self.runtime.service.controls.pause(_known_id(workflow_id)))


class WorkflowResumeResource:
    """``POST /workflows/{id}/resume``: 202 while the engine lets it go on; 409 if it
    ended or is not paused."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Resume a paused workflow",
        responses={202: Reply("The engine is resuming it", "Workflow")},
        errors=(404, 409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        _accepted(resp, self.runtime.service.controls.resume(_known_id(workflow_id)))


class WorkflowEventsResource:
    """``GET /workflows/{id}/events``: the history in order; ``after`` and ``limit`` page it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "A workflow's event history, in order",
        query=(AFTER, LIMIT),
        responses={200: Reply("A page of events", "EventPage")},
        errors=(404, 422, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        _known_id(workflow_id)
        after = _int_param(req, AFTER)
        limit = _int_param(req, LIMIT)
        events = self.runtime.store.events(workflow_id, after_id=after, limit=limit)
        resp.media = {
            "items": [event_view(e) for e in events],
            "next": str(events[-1]["id"]) if len(events) == limit else None,
        }


def _accepted(resp: falcon.Response, row: StoredWorkflow) -> None:
    """202: the engine applies the request shortly; the body is the workflow as it was."""
    resp.status = falcon.HTTP_202
    resp.location = f"/workflows/{row.state.id}"
    resp.media = workflow_view(row)


def workflow_filter(req: falcon.Request) -> WorkflowFilter:
    """The filter of ``GET /workflows``' query parameters (422 naming a wrong one), parsed
    as ``POST /batches`` parses its ``filter`` object (:func:`parse_filter`)."""
    given: dict[str, Any] = {
        p.name: req.get_param(p.name) for p in (STATUS, NAME, PARENT_ID, CREATED_AFTER, CREATED_BEFORE)
    }
    given[PRIORITY.name] = _int_param(req, PRIORITY) if req.get_param(PRIORITY.name) is not None else None
    given[INPUT.name] = _input_filter(req)
    # attr.* parameters may repeat (each value one condition): parsed from the query string.
    return replace(parse_filter(given), attributes=attribute_conditions(req), namespace=namespace_of(req))


def _input_filter(req: falcon.Request) -> dict | None:
    """``input``: a JSON object the workflow's input must contain; 422 naming the
    parameter if it is not one (like every other query parameter)."""
    raw = req.get_param("input")
    if raw is None:
        return None
    if len(raw) > MAX_INPUT_FILTER:
        raise unprocessable("input", f"must be at most {MAX_INPUT_FILTER} characters of JSON")
    try:
        value = strict_json.loads(raw, what="the input parameter")
    except InvalidJson as e:
        raise unprocessable("input" + e.path.removeprefix("$"), e.message) from e
    if not isinstance(value, dict):
        raise unprocessable("input", 'must be a JSON object, e.g. {"order_id": 42}')
    return value


def _encode_cursor(created_at: datetime, workflow_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), workflow_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The ``(created_at, id)`` in a cursor; 422 for anything this API did not write.

    A cursor is client input like any other: read with the strict JSON reader, and
    its id checked before it reaches the database.
    """
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = strict_json.loads(raw, what="the cursor")
        if not isinstance(decoded, list) or len(decoded) != 2:
            raise ValueError("not a cursor")
        created_at, workflow_id = decoded
        if not isinstance(created_at, str) or not is_workflow_id(workflow_id):
            raise ValueError("not a cursor")
        value = datetime.fromisoformat(created_at)
        if value.tzinfo is not None:
            raise ValueError("not a cursor")
        return value, workflow_id
    except (ValueError, TypeError, InvalidJson) as e:
        raise unprocessable("cursor", "not a cursor this API returned; pass the 'next' value as is") from e
