"""Which workflows a request means: the one filter type of ``GET /workflows`` (its query
parameters) and of ``POST /batches`` (its ``filter`` object), parsed and checked in one
place so that both doors accept and refuse the same things with the same words.

A filter is pure data; :func:`flow.persistence.queries.filter_conditions` turns it into
SQL, and :mod:`flow.persistence.input_filter` bounds what its ``input`` part may cost.
A field left out (``None``) does not narrow anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from flow.core import attributes
from flow.core.definition import NAME_PATTERN, is_definition_name
from flow.core.frozen import replace
from flow.core.priority import FIRST_PRIORITY, LAST_PRIORITY
from flow.core.start_request import MAX_WORKFLOW_ID, is_workflow_id
from flow.core.timestamps import iso, parse_iso
from flow.core.vocabulary import WorkflowStatus
from flow.errors import InvalidInput

_STATUSES = ", ".join(s.value for s in WorkflowStatus)
_TIMESTAMP_PROBLEM = "must be an ISO 8601 timestamp in years 1 to 9999, e.g. 2026-11-28T12:00:00Z"


@dataclass(frozen=True)
class WorkflowFilter:
    """What a workflow must be to match; every field optional."""

    #: Its status (a :class:`WorkflowStatus` value).
    status: str | None = None
    #: Its definition's name.
    name: str | None = None
    #: Created at or after this time (naive UTC, inclusive).
    created_after: datetime | None = None
    #: Created before this time (naive UTC, exclusive).
    created_before: datetime | None = None
    #: A JSON object its input contains (PostgreSQL's ``jsonb @>``).
    input: Mapping[str, Any] | None = None
    #: Only the children of this workflow.
    parent_id: str | None = None
    #: Its priority (1 first to 5 last).
    priority: int | None = None
    #: Its search attributes meet every one of these (``attr.<name>[.<op>]``).
    attributes: tuple[attributes.Condition, ...] = ()
    #: Its namespace: set by the door from the request's namespace, never by the client.
    namespace: str | None = None

    def __repr__(self) -> str:
        return f"<WorkflowFilter {self.to_json()}>"

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as JSON (what a batch stores and shows)."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "attributes":
                out.update((condition.parameter, condition.text) for condition in value)
            elif value is not None:
                out[field.name] = iso(value) if isinstance(value, datetime) else value
        return out

    def before(self, moment: datetime) -> WorkflowFilter:
        """This filter narrowed to workflows created before ``moment`` (a batch's own
        creation: what is started later is not in it)."""
        bound = moment if self.created_before is None else min(self.created_before, moment)
        return replace(self, created_before=bound)


#: The JSON Schema of a filter object (``POST /batches``'s ``filter``); the same checks
#: as :func:`parse_filter` makes, published for the OpenAPI document.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "an object of workflow filters: status, name, created_after, created_before, input, "
    "parent_id, priority, and attr.<name>[.<op>] conditions on search attributes",
    # As GET /workflows' query parameters: attr.amount.gt: "100" (a number or boolean is read as its text).
    "patternProperties": {r"^attr\.": {"type": ["string", "number", "boolean"]}},
    "properties": {
        "status": {
            "type": "string",
            "enum": [s.value for s in WorkflowStatus],
            "description": f"one of {_STATUSES}",
        },
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": f"a workflow definition name, matching {NAME_PATTERN}",
        },
        "created_after": {"type": "string", "format": "date-time", "description": _TIMESTAMP_PROBLEM[5:]},
        "created_before": {"type": "string", "format": "date-time", "description": _TIMESTAMP_PROBLEM[5:]},
        "input": {"type": "object", "description": 'a JSON object, e.g. {"order_id": 42}'},
        "parent_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_WORKFLOW_ID,
            "description": f"a workflow id of 1 to {MAX_WORKFLOW_ID} characters",
        },
        "priority": {
            "type": "integer",
            "minimum": FIRST_PRIORITY,
            "maximum": LAST_PRIORITY,
            "description": f"an integer from {FIRST_PRIORITY} to {LAST_PRIORITY}",
        },
    },
}


def parse_filter(given: Mapping[str, Any], *, prefix: str = "") -> WorkflowFilter:
    """A :class:`WorkflowFilter` from its fields (``None`` or absent: not set), else
    :class:`InvalidInput` at ``prefix + field`` (``status`` for a query parameter,
    ``$.filter.status`` in a body). Timestamps are strings, ``input`` an object."""
    conditions = attributes.parse_conditions(
        (key, value if isinstance(value, str) else json.dumps(value))
        for key, value in given.items()
        if key.startswith(attributes.PREFIX)
    )
    known = {f.name for f in fields(WorkflowFilter)} - {"attributes", "namespace"}
    unknown = sorted(key for key in set(given) - known if not key.startswith(attributes.PREFIX))
    if unknown:
        raise InvalidInput(prefix + unknown[0], f"unknown filter; allowed: {', '.join(SCHEMA['properties'])}")
    status = given.get("status")
    if status is not None and status not in {s.value for s in WorkflowStatus}:
        raise InvalidInput(prefix + "status", f"must be one of {_STATUSES}")
    name = given.get("name")
    if name is not None and not is_definition_name(name):
        raise InvalidInput(prefix + "name", f"must be a workflow definition name, matching {NAME_PATTERN}")
    parent_id = given.get("parent_id")
    if parent_id is not None and not is_workflow_id(parent_id):
        raise InvalidInput(prefix + "parent_id", f"must be a workflow id of 1 to {MAX_WORKFLOW_ID} characters")
    priority = given.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not FIRST_PRIORITY <= priority <= LAST_PRIORITY
    ):
        raise InvalidInput(prefix + "priority", f"must be an integer from {FIRST_PRIORITY} to {LAST_PRIORITY}")
    wanted = given.get("input")
    if wanted is not None and not isinstance(wanted, Mapping):
        raise InvalidInput(prefix + "input", 'must be a JSON object, e.g. {"order_id": 42}')
    return WorkflowFilter(
        status=status,
        name=name,
        created_after=parse_timestamp(given.get("created_after"), prefix + "created_after"),
        created_before=parse_timestamp(given.get("created_before"), prefix + "created_before"),
        input=wanted,
        parent_id=parent_id,
        priority=priority,
        attributes=conditions,
    )


def parse_timestamp(raw: Any, path: str) -> datetime | None:
    """An ISO 8601 string as naive UTC (what the store holds); None stays None."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidInput(path, _TIMESTAMP_PROBLEM)
    try:
        return parse_iso(raw)
    except ValueError as e:  # also at the calendar's ends: 0001-01-01T00:00:00+01:00 is in year 0
        raise InvalidInput(path, _TIMESTAMP_PROBLEM) from e


def from_json(stored: Mapping[str, Any]) -> WorkflowFilter:
    """A filter :meth:`WorkflowFilter.to_json` wrote (read back from the database)."""
    known = {f.name for f in fields(WorkflowFilter)} - {"attributes"}
    values: dict[str, Any] = {k: v for k, v in stored.items() if k in known}
    for key in ("created_after", "created_before"):
        values[key] = parse_iso(values.get(key))
    values["attributes"] = attributes.parse_conditions(
        (key, str(text)) for key, text in stored.items() if key.startswith(attributes.PREFIX)
    )
    return WorkflowFilter(**values)


__all__ = ["SCHEMA", "WorkflowFilter", "from_json", "parse_filter", "parse_timestamp"]
