"""``POST /definitions/{name}/replay``: would this body, as a new version, take over every
running workflow of the name? Nothing is registered or changed (:mod:`flow.service.replay`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.auth import namespace_of
from api.operation import Reply, operation
from api.resources.definitions import PUT_SCHEMA, named_body
from flow.core.definition import NAME_PATTERN, parse
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
        body = named_body(self.runtime, req, name)
        definition = parse(body, known_activities=self.runtime.activity_classes, source="<request>")
        # What PUT would refuse is refused here too: a report on a body that cannot be
        # registered (an unknown child, one that reaches it again) would tell CI it is safe.
        self.runtime.service.definitions.check_children(definition, source="<request>", namespace=namespace_of(req))
        resp.media = replay.report(self.runtime.store, definition, max_steps=replay.API_MAX_STEPS)
