"""A request to start a workflow, validated in one place for every door.

HTTP ``POST /workflows``, the plain JSON message on RabbitMQ and the Dramatiq
``flow.start_workflow`` message all carry the same fields; each door decodes its
bytes (with :mod:`flow.core.strict_json`) and hands the decoded mapping to
:func:`parse_start_request`, which refuses anything that cannot start a workflow
before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from flow.core import attributes, strict_json, validation
from flow.core.graph import NAME_PATTERN, is_definition_name
from flow.core.priority import DEFAULT_PRIORITY, FIRST_PRIORITY, LAST_PRIORITY
from flow.errors import InvalidInput

#: Longest idempotency key (the database column's size).
MAX_IDEMPOTENCY_KEY = 255
#: Longest workflow id (the database column's size; generated ids are UUIDs).
MAX_WORKFLOW_ID = 36
#: Also a schedule's ``priority`` (:mod:`flow.core.schedules`): one wording for both.
PRIORITY_DESCRIPTION = f"an integer from {FIRST_PRIORITY} (first) to {LAST_PRIORITY} (last), default {DEFAULT_PRIORITY}"
#: The ``priority`` field's schema, shared by the start request and the schedule.
PRIORITY_SCHEMA: dict[str, Any] = {
    "type": ["integer", "null"],
    "minimum": FIRST_PRIORITY,
    "maximum": LAST_PRIORITY,
    "default": DEFAULT_PRIORITY,
    "description": PRIORITY_DESCRIPTION,
}

_NAME_DESCRIPTION = f"the name of a registered workflow definition, matching {NAME_PATTERN}"

#: JSON Schema of a start request: what every door enforces and the API documents.
#: Descriptions read after "must be" (see :mod:`flow.core.validation`).
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Start a workflow",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN, "description": _NAME_DESCRIPTION},
        "input_data": {
            "type": ["object", "null"],
            "default": {},
            "description": "a JSON object, the workflow's input (null is the same as {})",
        },
        "idempotency_key": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY,
            "description": f"a string of 1 to {MAX_IDEMPOTENCY_KEY} characters; a second start with the same key "
            "returns the first workflow",
        },
        "priority": PRIORITY_SCHEMA,
        "attributes": attributes.VALUES_SCHEMA,
    },
    "examples": [
        {"name": "DummyWorkflow", "input_data": {"x": 1}},
        {"name": "DummyWorkflow", "priority": 1},
        {"name": "OrderWorkflow", "attributes": {"customer": "acme", "amount": 120.5}},
    ],
}
#: The Dramatiq start message's schema: a start request that may name the workflow's id.
SCHEMA_WITH_ID: dict[str, Any] = {
    **SCHEMA,
    "properties": {
        **SCHEMA["properties"],
        "workflow_id": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": MAX_WORKFLOW_ID,
            "description": f"a string of 1 to {MAX_WORKFLOW_ID} characters, the id to give the workflow",
        },
    },
}
_VALIDATOR = validation.validator(SCHEMA)
_VALIDATOR_WITH_ID = validation.validator(SCHEMA_WITH_ID)


@dataclass(frozen=True)
class StartRequest:
    """What a start needs: a definition name, the input, optionally a key, an id and a priority."""

    #: Name of a registered workflow definition.
    name: str
    #: The workflow's input, a JSON object (``{}`` when the request has none).
    input_data: Mapping[str, Any] = field(default_factory=dict)
    #: A second start with the same key returns the first workflow.
    idempotency_key: str | None = None
    #: The id to give the workflow (Dramatiq start messages only); None: a new UUID.
    workflow_id: str | None = None
    #: 1 (first) to 5 (last): the order in which its work waits for a concurrency limit.
    priority: int = DEFAULT_PRIORITY
    #: Values of the definition's search attributes, as JSON gives them; checked against
    #: its declarations when the definition is known (:func:`flow.core.attributes.check_declared`).
    attributes: Mapping[str, Any] = field(default_factory=dict)


def parse_start_request(fields: Any, *, allow_workflow_id: bool = False) -> StartRequest:
    """Validate a decoded start request against :data:`SCHEMA` (:data:`SCHEMA_WITH_ID` with
    ``allow_workflow_id``: the Dramatiq start message may name the workflow's id); raise
    :class:`~flow.errors.InvalidInput` (or its kind :class:`~flow.errors.InvalidJson`)
    naming the offending field.

    An optional field that is ``null`` counts as absent.
    """
    # Values decoded elsewhere (Dramatiq's own decoder) are checked here; a body that
    # went through strict_json.loads passes again in microseconds per field.
    strict_json.check(fields)
    validation.check(_VALIDATOR_WITH_ID if allow_workflow_id else _VALIDATOR, fields)
    if not is_definition_name(fields["name"]):  # the schema's "$" also matches before a final newline
        raise InvalidInput("$.name", f"must be {_NAME_DESCRIPTION}")
    return StartRequest(
        name=fields["name"],
        input_data=fields.get("input_data") or {},
        idempotency_key=fields.get("idempotency_key"),
        workflow_id=fields.get("workflow_id"),
        priority=check_priority(fields.get("priority"), path="$.priority"),
        attributes=fields.get("attributes") or {},
    )


def check_priority(value: Any, *, path: str) -> int:
    """``value`` as a priority (None: the default), else :class:`InvalidInput` at ``path``.

    After the schema, which lets ``2.0`` through (JSON Schema counts a float without a
    fraction as an integer): the column and every comparison of priorities hold ints, and
    a request that writes ``2.0`` is more likely a bug than a wish."""
    if value is None:
        return DEFAULT_PRIORITY
    if type(value) is not int or not FIRST_PRIORITY <= value <= LAST_PRIORITY:  # bool is an int subclass
        raise InvalidInput(path, f"must be {PRIORITY_DESCRIPTION}")
    return value


def check_idempotency_key(key: Any, *, path: str) -> str:
    """``key`` if it can be an idempotency key, else :class:`InvalidInput` at ``path``."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(path, f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters")
    problem = strict_json.text_problem(key)
    if problem:
        raise InvalidInput(path, problem)
    return key


def is_workflow_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` could be a stored workflow's id (an id that cannot is simply unknown)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_WORKFLOW_ID and strict_json.text_problem(value) is None
