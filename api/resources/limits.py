"""``/limits``: concurrency limits — what each holds and what waits for it, and the
number of a named one, set at run time (docs/design.md, "Concurrency limits")."""

from __future__ import annotations

import re
from typing import Any

import falcon

from api.auth import namespace_of
from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Reply, operation
from flow.clock import utcnow
from flow.core import validation
from flow.core.limits import ANY_NAME_PATTERN, MAX_LIMIT, MAX_RATE, MIN_RATE
from flow.core.namespaces import DEFAULT
from flow.persistence.limits import LimitTable, LimitUsage
from flow.persistence.namespaces import limit_owners
from flow.process.runtime import Runtime

_NAME = {"name": {"pattern": ANY_NAME_PATTERN, "maxLength": 300}}
#: ``PUT /limits/{name}``'s body.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "limit": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_LIMIT,
            "description": f"an integer from 0 to {MAX_LIMIT}: how many of a concurrency limit's slots may be held "
            "at once per key (0 holds everything back; null: the definitions' number again)",
        },
        "per_s": {
            "type": ["number", "null"],
            "minimum": MIN_RATE,
            "maximum": MAX_RATE,
            "description": f"a number from {MIN_RATE:g} to {MAX_RATE:g}: how many of a rate limit's steps may "
            "start per second per key (null: the definitions' rate again)",
        },
        "burst": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_LIMIT,
            "description": f"an integer from 1 to {MAX_LIMIT}: how many of a rate limit's steps may start at once "
            "(null: the definitions' burst again)",
        },
    },
    "examples": [{"limit": 3}, {"per_s": 10, "burst": 5}],
}
_CHECK = validation.validator(SCHEMA)


def limit_view(usage: LimitUsage) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": usage.name,
        "limit": usage.limit,
        "set_at_run_time": usage.set_at_run_time,
        "held": usage.held,
        "waiting": usage.waiting,
        "keys": usage.keys,
        "kind": usage.kind,
        "per_s": usage.per_s,
        "burst": usage.burst,
    }
    if usage.by_key is not None:
        view["by_key"] = [{"key": k, "held": h, "waiting": w} for k, (h, w) in sorted(usage.by_key.items())]
    return view


def _checked(name: str) -> str:
    """A limit's name from the path; 422 for one no limit can have."""
    if len(name) > 300 or not re.fullmatch(ANY_NAME_PATTERN, name):
        raise unprocessable("name", f"a limit's name matches {ANY_NAME_PATTERN} and has at most 300 characters")
    return name


class LimitsResource:
    """``GET /limits``: every limit with a number set or a step holding or waiting."""

    def __init__(self, runtime: Runtime) -> None:
        self.table = LimitTable(runtime.store.database)

    @operation(
        "The concurrency limits: their numbers, slots held and steps waiting",
        responses={200: Reply("The limits by name", "LimitList")},
        errors=(503,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        namespace = namespace_of(req)
        owners = limit_owners(self.table.database)
        # A limit belongs to the namespace that set it; one nobody set is default's.
        resp.media = {"items": [limit_view(u) for u in self.table.usage() if owners.get(u.name, DEFAULT) == namespace]}


class LimitResource:
    """``GET`` and ``PUT /limits/{name}``: one limit, per key; set its number."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.table = LimitTable(runtime.store.database)

    def _view(self, name: str, *, hidden: bool = False) -> dict[str, Any]:
        """``hidden``: another namespace's, read as a limit nobody set (nothing held)."""
        found = [] if hidden else self.table.usage(name)
        if found:
            return limit_view(found[0])
        return limit_view(LimitUsage(name, None, False, 0, 0, 0, by_key={}))

    @operation(
        "One limit, with what it holds and what waits per key (an unknown name: nothing held)",
        responses={200: Reply("The limit", "Limit")},
        errors=(422, 503),
        path=_NAME,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self._view(_checked(name), hidden=getattr(req.context, "hidden_limit", False))

    @operation(
        "Set a limit's number, or a rate limit's rate and burst (raised: what waits starts at once; lowered: "
        "nothing running stops)",
        body=SCHEMA,
        responses={200: Reply("The limit with its new number", "Limit")},
        errors=(409, 422, 503),
        path=_NAME,
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _checked(name)
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        validation.check(_CHECK, body)
        numbers = {"max_running": body["limit"]} if "limit" in body else {}
        numbers.update({key: body[key] for key in ("per_s", "burst") if key in body})
        numbers["namespace"] = namespace_of(req)
        self.table.set(name, numbers, utcnow())
        resp.media = self._view(name)
