"""Checking a decoded request body against its JSON Schema, naming the first problem.

A request body's schema lives beside the code that reads it (the start request in
:mod:`flow.core.start_request`, the cancel body in ``api/resources/workflows.py``);
that code validates with it here, and the OpenAPI document publishes the very same
schema, so what is documented is what is enforced. (Definitions, which report every
problem at once, have their own reporting in :mod:`flow.core.definition`.)

A problem is an :class:`~flow.errors.InvalidInput` whose path names the field: an
unknown field by its own path (``$.status``), a missing one by the path it should
have (``$.name``). Where the schema of the offending field has a ``description``,
the message is "must be <description>", so descriptions are written to read that
way ("a string of 1 to 255 characters").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import jsonschema

from flow.core.strict_json import json_path
from flow.errors import InvalidInput

#: Longest message (jsonschema quotes the offending value).
_MAX_MESSAGE_CHARS = 300


def validator(schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for ``schema`` (itself checked first: a broken schema fails at import)."""
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check(validator: jsonschema.Draft202012Validator, instance: Any) -> None:
    """Raise :class:`InvalidInput` for the first problem of ``instance`` (by path), if any."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise _problem(errors[0])


def _problem(error: jsonschema.ValidationError) -> InvalidInput:
    where = list(error.absolute_path)
    properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        unknown = sorted(str(key) for key in error.instance if key not in properties)
        return InvalidInput(json_path([*where, unknown[0]]), f"unknown field; allowed: {', '.join(properties)}")
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = next(name for name in cast(Iterable[str], error.validator_value) if name not in error.instance)
        description = properties.get(missing, {}).get("description")
        return InvalidInput(json_path([*where, missing]), f"required: {description}" if description else "required")
    if error.validator == "type" and not where and error.validator_value == "object":
        return InvalidInput("$", "must be a JSON object")
    description = error.schema.get("description") if where and isinstance(error.schema, Mapping) else None
    if description:
        return InvalidInput(json_path(where), f"must be {description}")
    return InvalidInput(json_path(where), shorten(error.message))


def shorten(message: str) -> str:
    """``message`` cut to a readable length (jsonschema's messages quote the offending value)."""
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[: _MAX_MESSAGE_CHARS - 1] + "…"


__all__ = ["check", "shorten", "validator"]
