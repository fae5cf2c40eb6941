"""The OpenAPI 3 document served at ``/openapi.json``.

Written by hand, next to the resources it describes; ``tests/embedded/test_openapi.py``
fails if a route is missing here or documented but absent, and a bounded
schemathesis run checks that responses match it.
"""

from __future__ import annotations

from typing import Any

from api.resources.workflows import MAX_EVENT_ID, MAX_INPUT_FILTER, MAX_PAGE
from flow.core.definition import NAME_PATTERN
from flow.core.definition import SCHEMA as DEFINITION_SCHEMA
from flow.core.start_request import MAX_IDEMPOTENCY_KEY
from flow.core.strict_json import MAX_DEPTH
from flow.core.vocabulary import Trigger

WORKFLOW_STATUSES = ["In Progress", "Finished", "Failed", "Cancelled"]
ACTIVITY_STATUSES = ["Pending", "Scheduled", "Started", "Waiting Retry", "Succeeded", "Failed", "Skipped", "Cancelled"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Not JSON that Libero Flow reads: malformed, not UTF-8, NaN or Infinity, an integer beyond 64 bits, "
        f"NUL or a lone surrogate in a string, or nested more than {MAX_DEPTH} deep; `errors` names the JSON path",
        401: "Missing or wrong bearer token",
        404: "Not found",
        409: "Conflict with a workflow's status",
        413: "Body over FLOW_MAX_BODY_BYTES",
        415: "Body is not application/json",
        422: "Invalid fields; each error names its JSON path",
        503: "Database unavailable",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


_ID = {"name": "workflow_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
    "description": f"Page size, at most {MAX_PAGE}.",
}
_VERSION = {**_NAME, "name": "version", "schema": {"type": "integer", "minimum": 1, "maximum": 2147483647}}
_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}


def _definition_schemas() -> dict[str, Any]:
    """The definition's JSON Schema as components: each of its ``$defs`` becomes a
    ``Definition<Name>`` schema and its references follow, so the document carries the
    same bounds the API enforces (derived, never copied by hand)."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return _ref("Definition" + ref.removeprefix("#/$defs/").capitalize())
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    body = {
        "type": "object",
        "description": "A workflow definition (see the README). In a PUT the name may be left out: the URL's is used.",
        "required": ["activities"],
        "additionalProperties": False,
        "properties": rewrite(DEFINITION_SCHEMA["properties"]),
    }
    defs = {f"Definition{name.capitalize()}": rewrite(schema) for name, schema in DEFINITION_SCHEMA["$defs"].items()}
    return {"DefinitionBody": body, **defs}


def _link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation at ``path``/``method`` (for stateful tests)."""
    pointer = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
    return {"operationRef": pointer, "parameters": parameters}


_WORKFLOW_LINKS = {
    name: _link(path, method, workflow_id="$response.body#/id")
    for name, path, method in [
        ("GetWorkflow", "/workflows/{workflow_id}", "get"),
        ("GetActivities", "/workflows/{workflow_id}/activities", "get"),
        ("GetEvents", "/workflows/{workflow_id}/events", "get"),
        ("Cancel", "/workflows/{workflow_id}/cancel", "post"),
        ("Retry", "/workflows/{workflow_id}/retry", "post"),
    ]
}
_DEFINITION_LINKS = {
    "GetDefinition": _link("/definitions/{name}", "get", name="$response.body#/name"),
    "GetVersion": _link(
        "/definitions/{name}/versions/{version}", "get", name="$response.body#/name", version="$response.body#/version"
    ),
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
    "StartRequest": {
        "type": "object",
        "required": ["name"],
        "examples": [{"name": "DummyWorkflow", "input_data": {"x": 1}}],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "description": "A registered definition's name."},
            "input_data": {"type": ["object", "null"], "default": {}, "description": "null is the same as {}."},
            "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
        },
    },
    "CancelRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string"}},
    },
    "WorkflowSummary": {
        "type": "object",
        "required": ["id", "name", "definition_version", "status", "created_at", "updated_at", "finished_at"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "definition_version": {"type": "integer"},
            "status": {"enum": WORKFLOW_STATUSES},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "finished_at": _TIMESTAMP,
        },
    },
    "Activity": {
        "type": "object",
        "required": ["position", "name", "status", "attempt", "max_attempts", "error"],
        "properties": {
            "position": {"type": "integer"},
            "id": {"type": "string", "description": "Unique within the workflow; outputs are keyed by it."},
            "name": {"type": "string"},
            "depends_on": {"type": ["array", "null"], "items": {"type": "string"}},
            "trigger": {"enum": [t.value for t in Trigger]},
            "when": {"type": ["string", "null"]},
            "independent": {"type": "boolean"},
            "required": {"type": "boolean"},
            "status": {"enum": ACTIVITY_STATUSES},
            "attempt": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "scheduled_at": _TIMESTAMP,
            "started_at": _TIMESTAMP,
            "finished_at": _TIMESTAMP,
            "duration_ms": {"type": ["number", "null"]},
            "output": {},
            "error": {"type": ["string", "null"]},
            "skip_reason": {"type": ["string", "null"], "description": "Why a Skipped activity did not run."},
        },
    },
    "Workflow": {
        "allOf": [
            _ref("WorkflowSummary"),
            {
                "type": "object",
                "required": ["input_data", "activities"],
                "properties": {
                    "input_data": {"type": "object"},
                    "config": {"type": "object"},
                    "output": {},
                    "error": {"type": ["string", "null"]},
                    "idempotency_key": {"type": ["string", "null"]},
                    "activities": {"type": "array", "items": _ref("Activity")},
                },
            },
        ]
    },
    "Event": {
        "type": "object",
        "required": ["id", "type", "position", "data", "occurred_at"],
        "properties": {
            "id": {"type": "integer"},
            "type": {"type": "string"},
            "position": {"type": ["integer", "null"]},
            "data": {"type": "object"},
            "occurred_at": {"type": "string", "format": "date-time"},
        },
    },
    "WorkflowPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("WorkflowSummary")},
            "next": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page."},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Event")},
            "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page."},
        },
    },
    **_definition_schemas(),
    "Definition": {
        "type": "object",
        "required": ["name", "version", "definition"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "created": {"type": "boolean"},
            "versions": {"type": "array", "items": {"type": "object"}},
            "definition": {"type": "object"},
        },
    },
}

_WORKFLOW = {"200": _json(_ref("Workflow"), "The workflow")}

PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "summary": "Redirects to the web page at /ui/",
            "security": [],
            "responses": {"302": {"description": "Location: /ui/"}},
        }
    },
    "/health": {
        "get": {
            "summary": "Is the database (and broker) reachable?",
            "security": [],
            "responses": {
                "200": _json({"type": "object"}, "Everything answers"),
                "503": _json({"type": "object"}, "Something does not"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics: workflows and activities by status, outbox size",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(401, 503),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors(401)},
        }
    },
    "/workflows": {
        "get": {
            "summary": "List workflows, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": WORKFLOW_STATUSES}},
                {"name": "name", "in": "query", "schema": {"type": "string", "pattern": NAME_PATTERN}},
                {"name": "created_after", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "created_before", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "input",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": MAX_INPUT_FILTER},
                    "description": 'A JSON object the input must contain (jsonb @>), e.g. {"order_id": 42}.',
                },
                _LIMIT,
            ],
            "responses": {"200": _json(_ref("WorkflowPage"), "A page of workflows"), **_errors(400, 401, 422, 503)},
        },
        "post": {
            "summary": "Start a workflow",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                    "description": "A second start with the same key returns the first workflow (200).",
                }
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("StartRequest")}}},
            "responses": {
                "201": {**_json(_ref("Workflow"), "Created; `Location` names it"), "links": _WORKFLOW_LINKS},
                "200": _json(_ref("Workflow"), "An earlier start with the same idempotency key"),
                **_errors(400, 401, 413, 415, 422, 503),
            },
        },
    },
    "/workflows/{workflow_id}": {
        "get": {
            "summary": "A workflow with every activity",
            "parameters": [_ID],
            "responses": {**_WORKFLOW, **_errors(401, 404, 503)},
        },
        "delete": {
            "summary": "Delete an ended workflow with its activities, history, timers and owed messages",
            "parameters": [_ID],
            "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 409, 503)},
        },
    },
    "/workflows/{workflow_id}/activities": {
        "get": {
            "summary": "A workflow's activities",
            "parameters": [_ID],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": _ref("Activity")}},
                    },
                    "The activities in definition order",
                ),
                **_errors(401, 404, 503),
            },
        }
    },
    "/workflows/{workflow_id}/events": {
        "get": {
            "summary": "A workflow's event history, in order",
            "parameters": [
                _ID,
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}},
                _LIMIT,
            ],
            "responses": {"200": _json(_ref("EventPage"), "A page of events"), **_errors(401, 404, 422, 503)},
        }
    },
    "/workflows/{workflow_id}/cancel": {
        "post": {
            "summary": "Cancel a running workflow",
            "parameters": [_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("CancelRequest")}}},
            "responses": {
                "202": _json(_ref("Workflow"), "The engine is cancelling it"),
                **_errors(400, 401, 404, 409, 413, 415, 422, 503),
            },
        }
    },
    "/workflows/{workflow_id}/retry": {
        "post": {
            "summary": "Run a failed or cancelled workflow again from where it stopped",
            "parameters": [_ID],
            "responses": {
                "202": _json(_ref("Workflow"), "The engine is retrying it"),
                **_errors(401, 404, 409, 503),
            },
        }
    },
    "/definitions": {
        "get": {
            "summary": "Every definition with its newest version",
            "responses": {"200": _json({"type": "object"}, "The definitions"), **_errors(401, 503)},
        }
    },
    "/definitions/validate": {
        "post": {
            "summary": "Validate a definition without registering it",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DefinitionBody")}}},
            "responses": {
                "200": _json({"type": "object"}, "Valid"),
                **_errors(400, 401, 413, 415, 422),
            },
        }
    },
    "/definitions/{name}": {
        "get": {
            "summary": "The newest version of a definition, with the list of versions",
            "parameters": [_NAME],
            "responses": {"200": _json(_ref("Definition"), "The definition"), **_errors(401, 404, 503)},
        },
        "put": {
            "summary": "Register a definition; a changed body becomes a new version",
            "parameters": [_NAME],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DefinitionBody")}}},
            "responses": {
                "201": {**_json(_ref("Definition"), "A new version"), "links": _DEFINITION_LINKS},
                "200": _json(_ref("Definition"), "This body was registered before"),
                **_errors(400, 401, 413, 415, 422, 503),
            },
        },
    },
    "/definitions/{name}/versions/{version}": {
        "get": {
            "summary": "One version of a definition",
            "parameters": [_NAME, _VERSION],
            "responses": {"200": _json(_ref("Definition"), "The definition"), **_errors(401, 404, 503)},
        },
        "delete": {
            "summary": "Delete a version no workflow in progress uses (ended ones keep their own snapshot)",
            "parameters": [_NAME, _VERSION],
            "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 409, 503)},
        },
    },
}


def document(*, auth: bool) -> dict[str, Any]:
    """The OpenAPI document; ``auth`` adds the bearer-token requirement."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Libero Flow",
            "version": "0.1.0",
            "description": "Start, watch, cancel and retry JSON-defined workflows; register definitions.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
