"""Workflow definitions: the JSON format, its validation and the loaded catalogue.

A definition is checked twice: against :data:`SCHEMA` (shape, types, unknown keys)
with ``jsonschema``, then semantically (every activity names a discovered
``BaseActivity`` subclass). Every problem is reported with its JSON path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from flow.errors import DefinitionError, DefinitionNotFound
from flow.policy import RetryPolicy, Timeouts

logger = logging.getLogger(__name__)

_RETRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
        "initial_delay_ms": {"type": "integer", "minimum": 0},
        "backoff": {"type": "number", "minimum": 1},
        "max_delay_ms": {"type": "integer", "minimum": 0},
        "jitter": {"type": "number", "minimum": 0, "maximum": 1},
    },
}

_TIMEOUTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schedule_to_start_s": {"type": "number", "exclusiveMinimum": 0},
        "start_to_close_s": {"type": "number", "exclusiveMinimum": 0},
        "workflow_s": {"type": "number", "exclusiveMinimum": 0},
    },
}

_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"retry": {"$ref": "#/$defs/retry"}, "timeouts": {"$ref": "#/$defs/timeouts"}},
}

#: JSON Schema of a workflow definition.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Libero Flow workflow definition",
    "type": "object",
    "required": ["name", "activities"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,127}$"},
        "config": {"$ref": "#/$defs/config"},
        "activities": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                    "independent": {"type": "boolean"},
                    "required": {"type": "boolean"},
                    "config": {"$ref": "#/$defs/config"},
                },
            },
        },
    },
    "$defs": {"config": _CONFIG_SCHEMA, "retry": _RETRY_SCHEMA, "timeouts": _TIMEOUTS_SCHEMA},
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class ActivitySpec:
    """One entry of a definition's ``activities`` list."""

    #: Class name of a ``BaseActivity`` subclass.
    name: str
    #: Starts with the workflow instead of waiting for every activity before it.
    independent: bool = False
    #: Its permanent failure fails the workflow.
    required: bool = True
    #: The activity's own ``config`` object, as written.
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Definition:
    """A validated workflow definition."""

    name: str
    config: Mapping[str, Any]
    activities: tuple[ActivitySpec, ...]
    #: The JSON object it was built from, kept as the workflow's snapshot.
    body: Mapping[str, Any]

    @property
    def digest(self) -> str:
        """Hash of the canonical JSON body: equal bodies are the same version."""
        return hashlib.sha256(canonical_json(self.body).encode()).hexdigest()

    def activity_config(self, spec: ActivitySpec) -> dict[str, Any]:
        """What the activity sees as ``self.config``: workflow config overlaid with its own."""
        return {**self.config, **spec.config}

    def retry_policy(self, spec: ActivitySpec) -> RetryPolicy:
        return RetryPolicy.from_config(self.config, spec.config)

    def timeouts(self, spec: ActivitySpec | None = None) -> Timeouts:
        """The activity's timeouts (workflow's overlaid with its own), or the workflow's."""
        return Timeouts.from_config(self.config, spec.config if spec else None)

    def __repr__(self) -> str:
        return f"<Definition {self.name} activities={len(self.activities)}>"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_path(parts: Collection[Any]) -> str:
    """``["activities", 0, "required"]`` -> ``$.activities[0].required``."""
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse(body: Any, *, known_activities: Collection[str], source: str = "<definition>") -> Definition:
    """Validate a decoded JSON definition and build a :class:`Definition`.

    Raises :class:`DefinitionError` listing every problem with its JSON path.
    """
    problems = [
        (json_path(error.absolute_path), error.message)
        for error in sorted(_VALIDATOR.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if not problems:
        for index, entry in enumerate(body["activities"]):
            if "workflow_s" in entry.get("config", {}).get("timeouts", {}):
                problems.append(
                    (
                        json_path(["activities", index, "config", "timeouts", "workflow_s"]),
                        "workflow_s is a workflow timeout: set it in the workflow's config.timeouts",
                    )
                )
            if entry["name"] not in known_activities:
                problems.append(
                    (
                        json_path(["activities", index, "name"]),
                        f"unknown activity {entry['name']!r}: no BaseActivity subclass of that name "
                        "in the activities package or FLOW_ACTIVITY_PACKAGES",
                    )
                )
    if problems:
        raise DefinitionError(source, problems)
    specs = tuple(
        ActivitySpec(
            name=entry["name"],
            independent=entry.get("independent", False),
            required=entry.get("required", True),
            config=entry.get("config", {}),
        )
        for entry in body["activities"]
    )
    return Definition(name=body["name"], config=body.get("config", {}), activities=specs, body=body)


def load_file(path: str | Path, *, known_activities: Collection[str]) -> Definition:
    """Read and validate one definition file."""
    path = Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DefinitionError(str(path), [("$", f"cannot read file: {e.strerror}")]) from e
    except json.JSONDecodeError as e:
        raise DefinitionError(str(path), [("$", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")]) from e
    return parse(body, known_activities=known_activities, source=str(path))


class Catalog:
    """The definitions a process knows, by name."""

    def __init__(self, definitions: Collection[Definition] = ()) -> None:
        self._by_name = {d.name: d for d in definitions}

    @classmethod
    def from_directory(cls, directory: str | Path, *, known_activities: Collection[str]) -> Catalog:
        """Load every ``*.json`` file in ``directory``; an invalid file is an error."""
        directory = Path(directory)
        if not directory.is_dir():
            logger.warning("definitions directory %s does not exist; no workflow can start", directory)
            return cls()
        definitions = []
        seen: dict[str, str] = {}
        for path in sorted(directory.glob("*.json")):
            d = load_file(path, known_activities=known_activities)
            definitions.append(d)
            if d.name in seen:
                raise DefinitionError(str(path), [("$.name", f"{d.name!r} is also defined in {seen[d.name]}")])
            seen[d.name] = str(path)
        return cls(definitions)

    def get(self, name: str) -> Definition:
        try:
            return self._by_name[name]
        except KeyError:
            raise DefinitionNotFound(name, list(self._by_name)) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
