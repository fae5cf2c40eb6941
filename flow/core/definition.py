"""Workflow definitions: the JSON format, its validation and the loaded catalogue.

A definition is checked three times: as strict JSON (:mod:`flow.core.strict_json`), against
:data:`SCHEMA` (shape, types, unknown keys, and bounds on every number the engine
computes with, so that a definition that validates can always run) with
``jsonschema``, then semantically (every activity names a discovered
``BaseActivity`` subclass). Every problem is reported with its JSON path; at most
:data:`MAX_PROBLEMS` of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import jsonschema

from flow.core import attributes, event_triggers, graph, kinds, limits, saga, strict_json, workflow_limit
from flow.core.graph import NAME_PATTERN as NAME_PATTERN  # re-exported: the API checks names with it
from flow.core.graph import is_definition_name as is_definition_name
from flow.core.kinds.base import PathOf
from flow.core.kinds.child import pinned
from flow.core.policy import MAX_ATTEMPTS, MAX_BACKOFF, MAX_DELAY_MS, MAX_TIMEOUT_S, RetryPolicy, Timeouts
from flow.core.pools import POOL_PATTERN, POOL_RULE, is_pool_name, stored_queue
from flow.core.state import ACTIVITY, ActivityState, StepSpec
from flow.core.strict_json import json_path
from flow.core.validation import shorten
from flow.core.vocabulary import Trigger
from flow.errors import DefinitionError, InvalidJson

logger = logging.getLogger(__name__)

#: Most activities in one definition.
MAX_ACTIVITIES = 1000
#: Most problems one validation reports (then "... and N more").
MAX_PROBLEMS = 20

_RETRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
        "initial_delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
        "backoff": {"type": "number", "minimum": 1, "maximum": MAX_BACKOFF},
        "max_delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
        "jitter": {"type": "number", "minimum": 0, "maximum": 1},
    },
}

_TIMEOUTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schedule_to_start_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
        "start_to_close_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
        # At least a second: the worker beats at most every half heartbeat_s, and a
        # shorter timeout would measure the machine's load, not a worker's death.
        "heartbeat_s": {"type": "number", "minimum": 1, "maximum": MAX_TIMEOUT_S},
        "workflow_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
    },
}

_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "retry": {"$ref": "#/$defs/retry"},
        "timeouts": {"$ref": "#/$defs/timeouts"},
        **saga.CONFIG_PROPERTIES,  # compensation and the failure handler (flow.core.saga)
    },
}

#: JSON Schema of a workflow definition: what :func:`parse` enforces and the API documents.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Libero Flow workflow definition",
    "type": "object",
    "required": ["name", "activities"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "config": {"$ref": "#/$defs/config"},
        # At most this many workflows (per key value) run at once (flow.core.workflow_limit).
        "concurrency": workflow_limit.SCHEMA,
        # The events that start it (flow.core.event_triggers).
        "triggers": event_triggers.SCHEMA,
        # Search attributes: names and types (flow.core.attributes).
        "attributes": attributes.DECLARATION_SCHEMA,
        "activities": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ACTIVITIES,
            "items": {
                "type": "object",
                # One kind of step per entry: checked by kinds.problems, naming the keys.
                "dependentRequired": kinds.dependent_required(),
                "additionalProperties": False,
                "properties": {
                    **kinds.properties(),
                    "id": {"type": "string", "pattern": graph.ID_PATTERN},
                    "depends_on": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_ACTIVITIES,
                        "uniqueItems": True,
                        "items": {"type": "string", "pattern": graph.ID_PATTERN},
                    },
                    "trigger": {"enum": [t.value for t in Trigger]},
                    "when": {"type": "string", "minLength": 1, "maxLength": graph.MAX_EXPRESSION_CHARS},
                    "independent": {"type": "boolean"},
                    "required": {"type": "boolean"},
                    "config": {"$ref": "#/$defs/config"},
                    "concurrency": limits.SCHEMA,
                    "rate_limit": limits.RATE_SCHEMA,
                    # The worker pool of an activity or a map (kinds.problems refuses it elsewhere).
                    "queue": {"type": "string", "pattern": POOL_PATTERN},
                },
            },
        },
    },
    "$defs": {"config": _CONFIG_SCHEMA, "retry": _RETRY_SCHEMA, "timeouts": _TIMEOUTS_SCHEMA},
    "examples": [
        {
            "name": "NapWorkflow",
            "config": {"retry": {"max_attempts": 3}},
            "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.1}}, {"name": "NoopActivity"}],
        }
    ],
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class StepDefinition:
    """One entry of a definition's ``activities`` list: what every kind of step has, and
    in ``spec`` what its kind reads (:mod:`flow.core.kinds`)."""

    #: Class name of a ``BaseActivity`` subclass (a step that runs none: its kind's name,
    #: or a child's definition).
    name: str
    #: Starts with the workflow instead of waiting for every activity before it.
    independent: bool = False
    #: Its permanent failure fails the workflow.
    required: bool = True
    #: The activity's own ``config`` object, as written.
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Unique within the definition (:func:`flow.core.graph.default_ids`); empty: ``name``.
    id: str = ""
    #: Ids of the activities it waits for; None: the positional rule.
    depends_on: tuple[str, ...] | None = None
    trigger: Trigger = Trigger.ALL_SUCCEEDED
    #: JMESPath condition over ``{"input", "outputs"}``: false skips the activity.
    when: str | None = None
    #: The worker pool its attempts go to (:mod:`flow.core.pools`); None: the default pool.
    queue: str | None = None
    #: Its kind, and what the kind reads from the entry.
    spec: StepSpec = field(default_factory=lambda: ACTIVITY)
    #: Its concurrency limit (:mod:`flow.core.limits`).
    limit: limits.StepLimit | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)


@dataclass(frozen=True)
class Definition:
    """A validated workflow definition."""

    name: str
    config: Mapping[str, Any]
    activities: tuple[StepDefinition, ...]
    #: The JSON object it was built from, kept as the workflow's snapshot.
    body: Mapping[str, Any]
    #: Its workflow concurrency limit (:mod:`flow.core.workflow_limit`); None: none.
    limit: limits.StepLimit | None = None
    #: The events that start it (:mod:`flow.core.event_triggers`).
    triggers: tuple[event_triggers.EventTrigger, ...] = ()
    #: Its search attributes' names and types (:mod:`flow.core.attributes`).
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Hash of the canonical JSON body: equal bodies are the same version."""
        return hashlib.sha256(canonical_json(self.body).encode()).hexdigest()

    def positions(self, spec: StepDefinition) -> tuple[int, ...] | None:
        """Positions of the activities ``spec`` depends on (None: the positional rule)."""
        if spec.depends_on is None:
            return None
        index = {s.id: position for position, s in enumerate(self.activities)}
        return tuple(index[d] for d in spec.depends_on)

    def initial_activities(self, child_versions: Mapping[str, int] | None = None) -> tuple[ActivityState, ...]:
        """The activities of a workflow started from this definition, all pending;
        ``child_versions``: the newest version of each child definition now (a child
        without ``version`` runs the newest at the parent's start)."""
        return tuple(
            ActivityState(
                position=position,
                name=spec.name,
                independent=spec.independent,
                required=spec.required,
                config=self.activity_config(spec),
                retry=self.retry_policy(spec),
                timeouts=kinds.KINDS[spec.spec.kind].step_timeouts(self.timeouts(spec)),
                id=spec.id,
                depends_on=self.positions(spec),
                trigger=spec.trigger,
                when=spec.when,
                queue=spec.queue,
                spec=pinned(spec.spec, child_versions or {}),
                limit=spec.limit,
            )
            for position, spec in enumerate(self.activities)
        )

    def activity_config(self, spec: StepDefinition) -> dict[str, Any]:
        """What the activity sees as ``self.config``: workflow config overlaid with its own."""
        return {**self.config, **spec.config}

    def retry_policy(self, spec: StepDefinition) -> RetryPolicy:
        return RetryPolicy.from_config(self.config, spec.config)

    def timeouts(self, spec: StepDefinition | None = None) -> Timeouts:
        """The activity's timeouts (workflow's overlaid with its own), or the workflow's."""
        return Timeouts.from_config(self.config, spec.config if spec else None)

    def __repr__(self) -> str:
        return f"<Definition {self.name} activities={len(self.activities)}>"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def parse(body: Any, *, known_activities: Collection[str], source: str = "<definition>") -> Definition:
    """Validate a decoded JSON definition and build a :class:`Definition`.

    Raises :class:`DefinitionError` listing the problems with their JSON paths.
    """
    try:
        # Bodies from the doors were read strictly already; this also covers the
        # ones built in Python and those read back from the database.
        strict_json.check(body)
    except InvalidJson as e:
        raise DefinitionError(source, [(e.path, e.message)]) from None
    problems = _problems(body, known_activities)
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], ("$", f"... and {more} more problem{'s' if more > 1 else ''}")]
        raise DefinitionError(source, problems)
    entries = body["activities"]
    names = [kinds.default_name(entry) for entry in entries]
    specs = tuple(
        StepDefinition(
            name=name,
            independent=entry.get("independent", False),
            required=entry.get("required", True),
            config=entry.get("config", {}),
            id=activity_id,
            depends_on=tuple(entry["depends_on"]) if "depends_on" in entry else None,
            trigger=Trigger(entry.get("trigger", Trigger.ALL_SUCCEEDED)),
            when=entry.get("when"),
            queue=stored_queue(entry.get("queue")),
            spec=kinds.of_entry(entry).parse(entry),
            limit=limits.StepLimit.from_entry(entry, definition=body["name"], step_id=activity_id),
        )
        for entry, name, activity_id in zip(entries, names, graph.default_ids(entries, names), strict=True)
    )
    return Definition(
        name=body["name"],
        config=body.get("config", {}),
        activities=specs,
        body=body,
        limit=workflow_limit.from_body(body),
        triggers=event_triggers.from_body(body),
        attributes=dict(body.get("attributes", {})),
    )


def _problems(body: Any, known_activities: Collection[str]) -> list[tuple[str, str]]:
    activities = body.get("activities") if isinstance(body, dict) else None
    if isinstance(activities, list) and len(activities) > MAX_ACTIVITIES:
        # Refused before the schema check, which would look at every entry.
        return [("$.activities", f"has {len(activities)} activities; a definition may have at most {MAX_ACTIVITIES}")]
    if (edges := graph.dependency_count(activities)) > graph.MAX_DEPENDENCIES:
        return [("$.activities", f"has {edges} dependencies in all; at most {graph.MAX_DEPENDENCIES}")]
    problems = [
        _schema_problem(error)
        for error in sorted(_VALIDATOR.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        return problems
    if not is_definition_name(body["name"]):  # Python's "$" also matches before a final newline
        problems.append(("$.name", f"{body['name']!r} does not match {NAME_PATTERN!r}"))
    entries = body["activities"]
    names = [kinds.default_name(entry) for entry in entries]
    ids = graph.default_ids(entries, names)
    problems.extend(graph.problems(entries, ids, lambda index, *keys: json_path(["activities", index, *keys])))
    problems.extend(workflow_limit.problems(body))
    problems.extend(saga.problems(body, known_activities, lambda *keys: json_path(list(keys))))
    problems.extend(event_triggers.problems(body))
    for name in body.get("attributes", {}):  # the schema's "$" also matches before a final newline
        if not attributes.is_name(name):
            problems.append((json_path(["attributes", name]), f"must be a name matching {attributes.NAME_PATTERN}"))
    for index, entry in enumerate(entries):
        if "queue" in entry and not is_pool_name(entry["queue"]):  # the schema's "$" let a final newline by
            problems.append((json_path(["activities", index, "queue"]), _pool_problem(entry["queue"])))
        if "workflow_s" in entry.get("config", {}).get("timeouts", {}):
            problems.append(
                (
                    json_path(["activities", index, "config", "timeouts", "workflow_s"]),
                    "workflow_s is a workflow timeout: set it in the workflow's config.timeouts",
                )
            )
        path = lambda *keys, index=index: json_path(["activities", index, *keys])  # noqa: E731
        found = kinds.problems(entry, path, known_activities)
        if not found and ("concurrency" in entry or "rate_limit" in entry):
            found = _limit_problems(entry, path, kinds.of_entry(entry).queues)
        problems += found
    return problems


def _limit_problems(entry: Mapping[str, Any], path: PathOf, queues: bool) -> list[tuple[str, str]]:
    """What the schema cannot say of an entry's ``concurrency`` or ``rate_limit``
    (:mod:`flow.core.limits`)."""
    which = "rate_limit" if "rate_limit" in entry else "concurrency"
    if "rate_limit" in entry and "concurrency" in entry:
        return [(path("rate_limit"), "a step takes a concurrency limit or a rate limit, not both")]
    if not queues:
        return [(path(which), "applies to activities, maps (their items) and child workflows, not this step")]
    if "key" in entry[which]:
        return graph.expression_problems(entry[which]["key"], path(which, "key"))
    return []


def _schema_problem(error: jsonschema.ValidationError) -> tuple[str, str]:
    """A schema error as ``(JSON path, message)``; a child workflow's own keys said in
    words rather than in jsonschema's."""
    where = list(error.absolute_path)
    if error.validator == "pattern" and where[-1:] == ["queue"]:
        return json_path(where), _pool_problem(error.instance)
    if error.validator == "dependentRequired" and isinstance(error.instance, dict):
        key = next(
            (
                k
                for k in cast(Iterable[str], error.validator_value)
                if k in error.instance and "workflow" not in error.instance
            ),
            "",
        )
        return json_path([*where, key]), "applies to a child workflow activity (workflow), which this one is not"
    return json_path(where), shorten(error.message)


def _pool_problem(value: Any) -> str:
    return f'{shorten(repr(value))} is not a worker pool: {POOL_RULE} (e.g. "gpu")'
