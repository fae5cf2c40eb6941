"""``POST /definitions/{name}/replay``: would this body, as a new version, take over every
running workflow of the name? Nothing is registered or changed (:mod:`flow.service.replay`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Reply, operation
from api.resources.definitions import PUT_SCHEMA
from flow.core.definition import NAME_PATTERN, Definition, parse
from flow.service import replay

if TYPE_CHECKING:
    from flow.process.runtime import Runtime

REPORT_SCHEMA = {
    "type": "object",
    "required": ["definition", "workflows", "compatible", "incompatible", "verdicts"],
    "properties": {
        "definition": {"type": "string"},
        "workflows": {"type": "integer", "description": "Running workflows checked."},
        "compatible": {"type": "integer"},
        "incompatible": {"type": "integer"},
        "verdicts": {
            "type": "array",
            "description": f"The incompatible workflows first; at most {replay.MAX_LISTED}.",
            "items": {
                "type": "object",
                "properties": {
                    "workflow_id": {"type": "string"},
                    "compatible": {"type": "boolean"},
                    "divergences": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "step": {"type": "string"},
                                "change": {
                                    "type": "string",
                                    "enum": [
                                        "removed",
                                        "kind",
                                        "class",
                                        "order",
                                        "dependency",
                                        "condition",
                                        "map-source",
                                        "required",
                                    ],
                                },
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def parsed_body(runtime: Runtime, req: falcon.Request, name: str) -> Definition:
    """The request's definition body, its name the URL's (which it may leave out)."""
    body = read_json_object(req, max_bytes=runtime.settings.max_body_bytes)
    if body.get("name", name) != name:
        raise unprocessable("$.name", f"must be {name!r}, the name in the URL")
    body.setdefault("name", name)
    return parse(body, known_activities=runtime.activity_classes, source="<request>")


class DefinitionReplayResource:
    """``POST /definitions/{name}/replay``: the replay report of a body (200 whatever the verdicts)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Check a definition against the history of every running workflow of its name",
        body=PUT_SCHEMA,
        responses={200: Reply("The report: per running workflow, compatible or where it diverges", REPORT_SCHEMA)},
        errors=(413, 415, 422, 503),
        path={"name": {"pattern": NAME_PATTERN}},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        definition = parsed_body(self.runtime, req, name)
        resp.media = replay.report(self.runtime.store, definition)
