"""JSON Schemas of what the API answers: the views of :mod:`api.views`, pages of them,
and errors. They are the OpenAPI document's components (``Reply("...", "Workflow")``
names one); a bounded schemathesis run checks real responses against them
(``tests/api/test_openapi.py``).

Request bodies are not here: each lives beside the code that validates it.
Vocabularies come from :mod:`flow.core.vocabulary`, never re-listed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flow.core.batches import BatchOperation, BatchStatus, Outcome
from flow.core.kinds import KINDS, kind_view_schemas
from flow.core.priority import FIRST_PRIORITY, LAST_PRIORITY
from flow.core.schedules import SCHEMA as SCHEDULE_SCHEMA
from flow.core.schedules import RunTrigger
from flow.core.vocabulary import ActivityStatus, HistoryType, Trigger, WorkflowStatus


def ref(name: str) -> dict[str, str]:
    """A reference to the component ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def enum(vocabulary: type[StrEnum]) -> dict[str, Any]:
    """The values of a ``StrEnum`` as a schema."""
    return {"type": "string", "enum": [member.value for member in vocabulary]}


def enum_of(values: Any) -> dict[str, Any]:
    """The values of a collection of names as a schema."""
    return {"type": "string", "enum": list(values)}


_TIMESTAMP = {"type": "string", "format": "date-time"}
_OPTIONAL_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_COUNT = {"type": "integer", "description": "How many activities it has."}


def _record(**properties: Any) -> dict[str, Any]:
    """An object with exactly these properties, all of them present."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _page(item: str, cursor: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "next": {"type": ["string", "null"], "description": f"Pass as `{cursor}` for the next page."},
        },
    }


COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "errors": {"type": "array", "items": _record(path={"type": "string"}, message={"type": "string"})},
        },
    },
    "WorkflowSummary": {
        "type": "object",
        "required": [
            "id",
            "name",
            "definition_version",
            "status",
            "created_at",
            "updated_at",
            "finished_at",
            "priority",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "definition_version": {"type": "integer"},
            "status": enum(WorkflowStatus),
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "finished_at": _OPTIONAL_TIMESTAMP,
            "parent_id": {"type": ["string", "null"], "description": "A child workflow's parent."},
            "priority": {
                "type": "integer",
                "minimum": FIRST_PRIORITY,
                "maximum": LAST_PRIORITY,
                "description": "1 (first) to 5 (last), from its start request (a child's is its parent's): "
                "what waits for a concurrency limit is admitted in priority order.",
            },
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
            "trigger": enum(Trigger),
            "when": {"type": ["string", "null"]},
            "independent": {"type": "boolean"},
            "required": {"type": "boolean"},
            "status": enum(ActivityStatus),
            "attempt": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "scheduled_at": _OPTIONAL_TIMESTAMP,
            "started_at": _OPTIONAL_TIMESTAMP,
            "finished_at": _OPTIONAL_TIMESTAMP,
            "duration_ms": {"type": ["number", "null"]},
            "output": {},
            "error": {"type": ["string", "null"]},
            "skip_reason": {"type": ["string", "null"], "description": "Why a Skipped activity did not run."},
            "heartbeat": {
                "type": ["object", "null"],
                "description": "The last heartbeat (self.heartbeat(details)): its details, handed to the next "
                "attempt as self.last_heartbeat, and when the engine got it (null before the first).",
                "properties": {"details": {}, "at": _OPTIONAL_TIMESTAMP},
            },
            "queue": {
                "type": ["string", "null"],
                "description": "The worker pool its attempts go to (the definition's queue; a map's items inherit "
                "it); null: the default pool.",
            },
            "limit": {
                "type": ["object", "null"],
                "description": 'The concurrency limit it claims a slot of (its name, and its key\'s value; "": '
                "no key); null: none.",
                "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
            },
            "waiting_for": {
                "type": ["string", "null"],
                "description": "What a step that waits to run waits for: a Queued one a slot of its limit "
                '("waiting for payments: 3 of 3 held"), one Scheduled on a named worker pool a worker of it '
                '("waiting for a worker on gpu (3 queued)", the count being the messages ready in the pool\'s '
                "queue, left out when the broker does not answer); null otherwise.",
            },
            "kind": {
                **enum_of(KINDS),
                "description": "What kind of step it is (each kind fills its own keys below, the others are "
                "null): activity, map (its items are activities of their own, after the definition's, of kind "
                "item), sleep, wait (for a signal), child (workflow); compensation (an undo) and on_failure (the "
                "failure handler), appended after the others when a run fails.",
            },
            **kind_view_schemas(),
        },
    },
    "Workflow": {
        "allOf": [
            ref("WorkflowSummary"),
            {
                "type": "object",
                "required": ["input_data", "activities"],
                "properties": {
                    "input_data": {"type": "object"},
                    "config": {"type": "object"},
                    "output": {},
                    "error": {"type": ["string", "null"]},
                    "idempotency_key": {"type": ["string", "null"]},
                    "compensation": {
                        "enum": ["running", "done", "failed", None],
                        "description": "Its undos (the activities' compensate), run when the run failed: running "
                        "(the workflow is Compensating), done, or failed (one failed and stopped the chain); null: "
                        "none ran.",
                    },
                    "paused": {
                        "type": "boolean",
                        "description": "Paused: nothing new is scheduled until it resumes (false once it ended).",
                    },
                    "parent_position": {
                        "type": ["integer", "null"],
                        "description": "A child workflow: the position of its parent's activity that runs it.",
                    },
                    "limit": {
                        "type": ["object", "null"],
                        "description": "The workflow concurrency limit it claims a slot of (the definition's "
                        'top-level concurrency: its name, and its key\'s value; "": no key); null: none.',
                        "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                    },
                    "queued": {
                        "type": "boolean",
                        "description": "Its run waits for a slot of its workflow concurrency limit: it is In "
                        "Progress but no step runs until it is let in (false once let in, and once it ended).",
                    },
                    "waiting_for": {
                        "type": ["string", "null"],
                        "description": 'What a queued workflow waits for ("waiting for Import [acme]: 1 of 1 '
                        'held"); null otherwise.',
                    },
                    "attributes": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                        "description": "Its search attributes by name (times as ISO 8601 text); "
                        "GET /workflows?attr.<name>=... finds it by them.",
                    },
                    "activities": {"type": "array", "items": ref("Activity")},
                    "history_length": {
                        "type": "integer",
                        "description": "Entries of its history (GET /workflows/{id}/events).",
                    },
                    "history_warning": {
                        "type": ["string", "null"],
                        "description": "Set once the history holds FLOW_HISTORY_WARN entries or more (10,000 by "
                        "default): what to do about it (a child workflow per batch); null below.",
                    },
                },
            },
        ]
    },
    "ActivityList": _record(items={"type": "array", "items": ref("Activity")}),
    "Event": {
        "type": "object",
        "required": ["id", "type", "position", "data", "occurred_at"],
        "properties": {
            "id": {"type": "integer"},
            "type": enum(HistoryType),
            "position": {"type": ["integer", "null"]},
            "data": {"type": "object"},
            "occurred_at": _TIMESTAMP,
        },
    },
    "WorkflowPage": _page("WorkflowSummary", "cursor"),
    "EventPage": _page("Event", "after"),
    "Definition": {
        "type": "object",
        "required": ["name", "version", "definition"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "created": {"type": "boolean"},
            "versions": {"type": "array", "items": _record(version={"type": "integer"}, created_at=_TIMESTAMP)},
            "definition": {"type": "object"},
            "steps": {
                "type": "array",
                "description": "Each step of the definition, in order: its id (its own, or the one the server "
                "gives it), its name and its kind.",
                "items": _record(id={"type": "string"}, name={"type": "string"}, kind=enum_of(KINDS)),
            },
        },
    },
    "DefinitionList": _record(
        items={
            "type": "array",
            "items": _record(
                name={"type": "string"}, version={"type": "integer"}, created_at=_TIMESTAMP, activities=_COUNT
            ),
        },
        broken={
            "type": "array",
            "description": "Definition files left out because they are invalid (the others load): "
            "the file, the definition's name when it could be read, and why.",
            "items": _record(source={"type": "string"}, name={"type": ["string", "null"]}, error={"type": "string"}),
        },
    ),
    "Validation": _record(valid={"const": True}, name={"type": "string"}, activities=_COUNT),
    "Schedule": {
        "type": "object",
        "required": [*SCHEDULE_SCHEMA["properties"], "next_run_at", "fired", "skipped", "recent_runs"],
        "properties": {
            **{
                key: {k: v for k, v in value.items() if k != "description"}
                for key, value in SCHEDULE_SCHEMA["properties"].items()
            },
            "input_data": {"type": "object"},
            "source": {"enum": ["api", "file"]},
            "next_run_at": {**_OPTIONAL_TIMESTAMP, "description": "null while paused"},
            "last_tick_at": {**_TIMESTAMP, "description": "Every tick up to this one is handled."},
            "last_fired_at": _OPTIONAL_TIMESTAMP,
            "last_workflow_id": {"type": ["string", "null"]},
            "buffered_tick_at": _OPTIONAL_TIMESTAMP,
            "fired": {"type": "integer", "description": "Workflows it started."},
            "skipped": {"type": "integer", "description": "Ticks skipped: missed, overlapping, or unstartable."},
            "last_skipped_at": _OPTIONAL_TIMESTAMP,
            "last_error": {"type": ["string", "null"]},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "recent_runs": {
                "type": "array",
                "items": _record(
                    tick_at=_TIMESTAMP,
                    workflow_id={"type": "string"},
                    trigger=enum(RunTrigger),
                    status={"type": ["string", "null"], "description": "null once the workflow was deleted"},
                    finished_at=_OPTIONAL_TIMESTAMP,
                ),
            },
        },
    },
    "SchedulePage": _page("Schedule", "cursor"),
    "TriggerEvent": {
        "type": "object",
        "required": ["id", "type", "data", "received_at", "workflows", "matched", "missed"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "data": {"type": "object"},
            "received_at": _TIMESTAMP,
            "duplicate": {"type": "boolean", "description": "Only in POST's answer: the id was sent before."},
            "workflows": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The ids of the workflows it started or will start.",
            },
            "matched": {
                "type": "array",
                "description": "Each trigger it matched: its workflow, and `state`: waiting (its window "
                "is open until `closes_at`), owed, started (with the workflow's `status`) or failed (`error`).",
                "items": {
                    "type": "object",
                    "required": ["definition", "trigger", "mode", "key", "workflow_id", "state"],
                    "properties": {
                        "definition": {"type": "string"},
                        "trigger": {"type": "integer", "description": "Its index in the definition's triggers."},
                        "mode": {"enum": ["immediate", "debounce", "batch"]},
                        "key": {"type": "string"},
                        "workflow_id": {"type": "string"},
                        "closes_at": _OPTIONAL_TIMESTAMP,
                        "state": {"enum": ["waiting", "owed", "started", "failed"]},
                        "status": {"type": "string"},
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
            "missed": {
                "type": "array",
                "description": "Each trigger of its type that it did not match, and why.",
                "items": _record(
                    definition={"type": "string"},
                    trigger={"type": "integer"},
                    mode={"enum": ["immediate", "debounce", "batch"]},
                    reason={"type": "string"},
                ),
            },
            "reason": {"type": "string", "description": "When it started nothing: why."},
        },
    },
    "TriggerEventPage": _page("TriggerEvent", "cursor"),
    "Limit": {
        "type": "object",
        "required": ["name", "limit", "set_at_run_time", "held", "waiting", "keys", "kind", "per_s", "burst"],
        "properties": {
            "name": {"type": "string"},
            "limit": {"type": ["integer", "null"], "description": "Slots per key; null: none set (everything waits)."},
            "set_at_run_time": {"type": "boolean", "description": "PUT /limits/{name} set the number."},
            "held": {"type": "integer", "description": "Slots held: steps in flight and grants not yet taken up."},
            "waiting": {"type": "integer", "description": "Steps queued for a slot."},
            "keys": {"type": "integer", "description": "Key values holding or waiting."},
            "kind": {"enum": ["concurrency", "rate"]},
            "per_s": {"type": ["number", "null"], "description": "A rate limit's starts per second per key."},
            "burst": {"type": ["integer", "null"], "description": "A rate limit's starts at once per key."},
            "by_key": {
                "type": "array",
                "description": "Only in GET /limits/{name}: held and waiting per key value.",
                "items": _record(key={"type": "string"}, held={"type": "integer"}, waiting={"type": "integer"}),
            },
        },
    },
    "LimitList": _record(items={"type": "array", "items": ref("Limit")}),
    "PoolList": _record(
        items={
            "type": "array",
            "items": _record(
                name={
                    "type": "string",
                    "description": 'The pool\'s name ("default": the queue of every activity that names none).',
                },
                queue={"type": "string", "description": "Its RabbitMQ queue: <prefix>.activities[.<name>]."},
                queued={
                    "type": ["integer", "null"],
                    "description": "Messages ready in the queue (not those a worker holds, nor retries waiting "
                    "for their delay); null when the broker does not answer.",
                },
                definitions={
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The registered definitions (newest versions) that name it.",
                },
            ),
        }
    ),
    "Batch": {
        "type": "object",
        "required": [
            *("id", "operation", "filter", "rerun", "status", "matched", "done", "failed", "skipped", "pending"),
            *("created_by", "created_at", "updated_at", "finished_at"),
        ],
        "properties": {
            "id": {"type": "string"},
            "operation": enum(BatchOperation),
            "filter": {"type": "object", "description": "The workflow filter, as given (times in UTC)."},
            "rerun": {"type": ["object", "null"], "description": "The rerun options of a rerun."},
            "status": enum(BatchStatus),
            "matched": {"type": "integer", "description": "Workflows matched so far."},
            "done": {"type": "integer", "description": "Workflows sent their control."},
            "failed": {"type": "integer", "description": "Workflows whose control was refused for good."},
            "skipped": {"type": "integer", "description": "Workflows the operation no longer applied to."},
            "pending": {"type": "integer", "description": "Matched workflows not handled yet."},
            "created_by": {"type": ["string", "null"]},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "finished_at": _OPTIONAL_TIMESTAMP,
            "problems": {
                "type": "array",
                "description": "Not in lists: the first workflows that failed or were skipped, and why.",
                "items": _record(
                    workflow_id={"type": "string"},
                    outcome={"enum": [Outcome.FAILED.value, Outcome.SKIPPED.value]},
                    reason={"type": ["string", "null"]},
                ),
            },
        },
    },
    "BatchPage": _page("Batch", "cursor"),
    "Health": _record(
        status={"enum": ["ok", "unavailable"]},
        database={"type": "string", "description": '"ok", or why not'},
        broker={"type": "string", "description": '"ok", or why not'},
    ),
}

__all__ = ["COMPONENTS", "enum", "ref"]
