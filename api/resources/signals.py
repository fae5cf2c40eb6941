"""``POST /workflows/{id}/signals/{name}``: send a signal to a workflow (flow.core.kinds.wait);
``POST /signals/{token}``: send a waiting step its signal by its callback token
(flow.core.callback_tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.errors import unprocessable
from api.media import has_body, read_json_object
from api.operation import Param, Reply, operation
from flow.core import callback_tokens, validation
from flow.core.kinds import wait as signals
from flow.core.start_request import SCHEMA as START_SCHEMA
from flow.core.start_request import check_idempotency_key, is_workflow_id
from flow.errors import WorkflowNotFound

if TYPE_CHECKING:
    from flow.process.runtime import Runtime

SIGNAL_KEY = Param(
    "Idempotency-Key",
    START_SCHEMA["properties"]["idempotency_key"] | {"type": "string"},
    "The same key sends the same signal: a retried POST delivers it once; "
    "the same key with another payload answers 409.",
)
#: The optional body: the payload (any JSON), the output of the step that takes it.
BODY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"payload": {"description": "Any JSON value: the output of the step that takes the signal."}},
    "examples": [{"payload": {"approved_by": "ana"}}],
}
_BODY = validation.validator(BODY_SCHEMA)
SENT_SCHEMA = {
    "type": "object",
    "required": ["workflow_id", "name", "signal_id"],
    "properties": {
        "workflow_id": {"type": "string"},
        "name": {"type": "string"},
        "signal_id": {"type": "string", "description": "The same for every send with the same Idempotency-Key."},
    },
}


class SignalResource:
    """Send a signal: 202 once it is on its way to the workflow's engine, which records it
    in the workflow's inbox with its history entry; a step waiting for its name takes it,
    or the first one that waits later does."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Send a signal to a workflow, with an optional payload",
        body=BODY_SCHEMA,
        body_required=False,
        headers=(SIGNAL_KEY,),
        path={"name": {"type": "string", "pattern": signals.NAME_PATTERN}},
        responses={202: Reply("On its way to the workflow's engine", SENT_SCHEMA)},
        errors=(404, 409, 413, 415, 422, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow_id: str, name: str) -> None:
        if not is_workflow_id(workflow_id):
            raise WorkflowNotFound(workflow_id)
        if not signals.is_signal_name(name):
            raise unprocessable("name", f"must match {signals.NAME_PATTERN}")
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes) if has_body(req) else {}
        validation.check(_BODY, body)
        payload = body.get("payload")
        key = req.get_header(SIGNAL_KEY.name)
        if key is not None:
            key = check_idempotency_key(key, path=SIGNAL_KEY.name)
        _, signal_id = self.runtime.service.controls.signal(workflow_id, name, payload, idempotency_key=key)
        resp.status = falcon.HTTP_202
        resp.location = f"/workflows/{workflow_id}"
        resp.media = {"workflow_id": workflow_id, "name": name, "signal_id": signal_id}


class CallbackResource:
    """A third party ends a wait with the wait's callback token, without knowing the
    workflow: 202 once its signal is on its way (the same ``signal_id`` for every POST of
    the token: the engine takes it once); 404 for a token this deployment did not make
    (malformed, forged, too long: one answer); 410 once the wait or its workflow ended.
    Open without ``FLOW_API_TOKEN``: the token is the credential, for one step."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Send a waiting step its signal by the step's callback token",
        body=BODY_SCHEMA,
        body_required=False,
        path={"token": {"type": "string", "minLength": 1, "maxLength": callback_tokens.MAX_TOKEN_CHARS}},
        responses={202: Reply("On its way to the workflow's engine", SENT_SCHEMA)},
        errors=(404, 410, 413, 415, 422, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        # The token first: one that is not ours answers 404 whatever the body.
        target = self.runtime.service.callbacks.target(token)
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes) if has_body(req) else {}
        validation.check(_BODY, body)
        name = self.runtime.service.callbacks.send(target, body.get("payload"))
        resp.status = falcon.HTTP_202
        resp.media = {"workflow_id": target.workflow_id, "name": name, "signal_id": target.signal_id}
