"""``POST /workflows/{id}/rerun``: run an ended workflow again from a chosen step
(:mod:`flow.core.rerun`), optionally on another version of its definition or with a new input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.media import read_json_object
from api.operation import Reply, operation
from api.views import workflow_view
from flow.core import validation
from flow.core.graph import ID_PATTERN
from flow.core.start_request import is_workflow_id
from flow.errors import WorkflowNotFound

if TYPE_CHECKING:
    from flow.process.runtime import Runtime

#: The body: the step to rerun from, and optionally the version, the input and who asks.
BODY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["from"],
    "properties": {
        "from": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "the id of a step of the workflow (or of a map item, `fetch[3]`), 1 to 200 characters: "
            "the step to rerun from; it and every step that depends on it run again, every other step keeps its "
            "outcome and output",
        },
        "version": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647,
            "description": "a version of the workflow's definition (an integer from 1), to run on; 409 with the "
            "replay report when it cannot take over what the rerun keeps of the history",
        },
        "input_data": {"type": "object", "description": "a JSON object: the new run's input (default: the workflow's)"},
        "by": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "who asks, for the history (default: `api`): 1 to 128 letters, digits, `_`, `.` or `-`",
        },
    },
    "examples": [
        {"from": "DoAnotherThingActivity"},
        {"from": "ship", "version": 4, "input_data": {"order": 42}, "by": "ana"},
    ],
}
_BODY = validation.validator(BODY_SCHEMA)


class WorkflowRerunResource:
    """202 while the engine reruns it; 409 while it runs (or for a child, or a version that
    cannot take over); 422 for a step it does not have."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Run a failed, finished or cancelled workflow again from a chosen step",
        body=BODY_SCHEMA,
        responses={202: Reply("The engine is rerunning it", "Workflow")},
        errors=(404, 409, 413, 415, 422, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str) -> None:
        if not is_workflow_id(workflow_id):
            raise WorkflowNotFound(workflow_id)
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        validation.check(_BODY, body)
        row = self.runtime.service.controls.rerun(
            workflow_id,
            body["from"],
            version=body.get("version"),
            input_data=body.get("input_data"),
            by=body.get("by", "api"),
        )
        resp.status = falcon.HTTP_202
        resp.location = f"/workflows/{workflow_id}"
        resp.media = workflow_view(row)
