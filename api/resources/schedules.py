"""``/schedules``: cron schedules — list, show, create or replace, delete, pause, resume
and trigger now (docs/design.md, "Schedules")."""

from __future__ import annotations

import base64

import falcon

from api.auth import namespace_of
from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Link, Reply, operation
from api.resources.workflows import CURSOR, LIMIT, _int_param
from api.views import workflow_view
from flow.core.definition import NAME_PATTERN
from flow.core.schedules import SCHEMA, check_name
from flow.errors import InvalidInput, ScheduleNotFound
from flow.persistence.schedules import StoredSchedule
from flow.process.runtime import Runtime
from flow.service.schedules import schedule_view

#: A name that does not match cannot exist (404, or 422 when creating).
_NAME = {"name": {"pattern": NAME_PATTERN}}
_SCHEDULE = Reply("The schedule, with its next run and recent runs", "Schedule")
_LINKS = {
    "GetSchedule": Link("ScheduleResource.on_get", {"name": "$response.body#/name"}),
    "Trigger": Link("ScheduleTriggerResource.on_post", {"name": "$response.body#/name"}),
}


def _found(runtime: Runtime, name: str) -> StoredSchedule:
    """The schedule, or 404 (422 for a name no schedule can have: the service checks it)."""
    try:
        return runtime.schedules.get(name)
    except ScheduleNotFound as e:
        raise falcon.HTTPNotFound(title="Schedule not found", description=str(e)) from e


def _view(runtime: Runtime, stored: StoredSchedule) -> dict:
    runs = runtime.schedules.table.recent_runs([stored.name])
    return schedule_view(stored, runs[stored.name])


class SchedulesResource:
    """``GET /schedules``: the schedules by name, paged as ``GET /workflows`` is
    (``limit``, and ``cursor`` = the previous page's ``next``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "The schedules by name, a page at a time, with their next run and recent runs",
        query=(CURSOR, LIMIT),
        responses={200: Reply("A page of schedules", "SchedulePage")},
        errors=(422, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = _int_param(req, LIMIT)
        found = self.runtime.schedules.list(
            after=_decode_cursor(req.get_param(CURSOR.name)), limit=limit, namespace=namespace_of(req)
        )
        runs = self.runtime.schedules.table.recent_runs(s.name for s in found)
        next_cursor = _encode_cursor(found[-1].name) if len(found) == limit else None
        resp.media = {"items": [schedule_view(s, runs[s.name]) for s in found], "next": next_cursor}


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    """The name in a cursor; 422 for anything this API did not write."""
    if not cursor:
        return None
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        check_name(name)
        return name
    except (ValueError, InvalidInput) as e:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise unprocessable(CURSOR.name, "not a cursor this API returned; pass the 'next' value as is") from e


class ScheduleResource:
    """``GET``, ``PUT`` (create or replace) and ``DELETE /schedules/{name}``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation("One schedule", responses={200: _SCHEDULE}, errors=(404, 422, 503), path=_NAME)
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = _view(self.runtime, _found(self.runtime, name))

    @operation(
        "Create or replace a schedule",
        body=SCHEMA,
        responses={
            201: Reply("Created; `Location` names it", "Schedule", links=_LINKS),
            200: Reply("Replaced", "Schedule", links=_LINKS),
        },
        errors=(409, 503),
        path=_NAME,
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        stored, created = self.runtime.schedules.put(name, body, namespace=namespace_of(req))
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/schedules/{name}"
        resp.media = _view(self.runtime, stored)

    @operation(
        "Delete a schedule (the workflows it started stay)",
        responses={204: Reply("Deleted")},
        errors=(404, 422, 503),
        path=_NAME,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _found(self.runtime, name)
        try:
            self.runtime.schedules.delete(name)
        except ScheduleNotFound as e:  # deleted meanwhile
            raise falcon.HTTPNotFound(title="Schedule not found", description=str(e)) from e
        resp.status = falcon.HTTP_204


class _PauseResource:
    paused: bool

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _set(self, resp: falcon.Response, name: str) -> None:
        _found(self.runtime, name)
        resp.media = _view(self.runtime, self.runtime.schedules.set_paused(name, self.paused))


class SchedulePauseResource(_PauseResource):
    """``POST /schedules/{name}/pause``: no tick starts a workflow until it is resumed."""

    paused = True

    @operation("Pause a schedule", responses={200: _SCHEDULE}, errors=(404, 422, 503), path=_NAME)
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._set(resp, name)


class ScheduleResumeResource(_PauseResource):
    """``POST /schedules/{name}/resume``: it ticks again from now on (the ticks of the
    pause are not caught up)."""

    paused = False

    @operation("Resume a paused schedule", responses={200: _SCHEDULE}, errors=(404, 422, 503), path=_NAME)
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._set(resp, name)


class ScheduleTriggerResource:
    """``POST /schedules/{name}/trigger``: start its workflow now, whatever its cron
    expression, pause or overlap rule say."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Start the schedule's workflow now",
        responses={201: Reply("The workflow started; `Location` names it", "Workflow")},
        errors=(404, 422, 503),
        path=_NAME,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _found(self.runtime, name)
        state = self.runtime.schedules.trigger(name)
        resp.status = falcon.HTTP_201
        resp.location = f"/workflows/{state.id}"
        resp.media = workflow_view(self.runtime.store.get(state.id), self.runtime.service.callbacks.tokens)
