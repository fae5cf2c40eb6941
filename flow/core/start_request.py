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
from typing import Any

from flow.core import strict_json
from flow.core.definition import NAME_PATTERN, is_definition_name
from flow.errors import InvalidInput

#: Fields of a start request. ``workflow_id`` only where the door allows it.
FIELDS = ("name", "input_data", "idempotency_key")
#: Longest idempotency key (the database column's size).
MAX_IDEMPOTENCY_KEY = 255
#: Longest workflow id (the database column's size; generated ids are UUIDs).
MAX_WORKFLOW_ID = 36


@dataclass(frozen=True)
class StartRequest:
    """What a start needs: a definition name, the input, optionally a key and an id."""

    #: Name of a registered workflow definition.
    name: str
    #: The workflow's input, a JSON object (``{}`` when the request has none).
    input_data: Mapping[str, Any] = field(default_factory=dict)
    #: A second start with the same key returns the first workflow.
    idempotency_key: str | None = None
    #: The id to give the workflow (Dramatiq start messages only); None: a new UUID.
    workflow_id: str | None = None


def parse_start_request(fields: Any, *, allow_workflow_id: bool = False) -> StartRequest:
    """Validate a decoded start request; raise :class:`~flow.errors.InvalidInput`
    (or its kind :class:`~flow.errors.InvalidJson`) naming the offending field.

    An optional field that is ``null`` counts as absent. ``allow_workflow_id``
    admits a ``workflow_id`` field (the Dramatiq start message has one).
    """
    if not isinstance(fields, Mapping):
        raise InvalidInput("$", 'must be a JSON object like {"name": ..., "input_data": {...}}')
    # Values decoded elsewhere (Dramatiq's own decoder) are checked here; a body that
    # went through strict_json.loads passes again in microseconds per field.
    strict_json.check(fields)
    allowed = (*FIELDS, "workflow_id") if allow_workflow_id else FIELDS
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidInput(strict_json.json_path([unknown[0]]), f"unknown field; allowed: {', '.join(allowed)}")
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("$.name", "required, a string: the name of a workflow definition")
    if not is_definition_name(name):
        raise InvalidInput("$.name", f"no workflow definition has this name: names match {NAME_PATTERN}")
    input_data = fields.get("input_data")
    if input_data is None:
        input_data = {}
    elif not isinstance(input_data, Mapping):
        raise InvalidInput("$.input_data", "must be a JSON object")
    key = fields.get("idempotency_key")
    if key is not None:
        check_idempotency_key(key, path="$.idempotency_key")
    workflow_id = fields.get("workflow_id")
    if workflow_id is not None and not is_workflow_id(workflow_id):
        raise InvalidInput("$.workflow_id", f"must be a string of 1 to {MAX_WORKFLOW_ID} characters")
    return StartRequest(name=name, input_data=input_data, idempotency_key=key, workflow_id=workflow_id)


def check_idempotency_key(key: Any, *, path: str) -> str:
    """``key`` if it can be an idempotency key, else :class:`InvalidInput` at ``path``."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(path, f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters")
    problem = strict_json.text_problem(key)
    if problem:
        raise InvalidInput(path, problem)
    return key


def is_workflow_id(value: Any) -> bool:
    """Whether ``value`` could be a stored workflow's id (an id that cannot is simply unknown)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_WORKFLOW_ID and strict_json.text_problem(value) is None
