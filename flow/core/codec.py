"""Frozen dataclasses as plain JSON values by field name, and back: how every message
of :mod:`flow.wire.messages` is written and read, in one place.

A field's annotation says what it holds, and so how it is checked on the way in and
written on the way out:

- :data:`Name` (an id, a class or queue name): a string of 1 to 255 characters;
- :data:`Count` (a position, an attempt): an integer the database's columns hold;
- ``str``, ``float`` (at least 0), :data:`JsonObject`, ``Any`` (any JSON value);
- :data:`SearchAttributes`: what :func:`flow.core.attributes.to_wire` writes (its own
  errors name the attribute);
- ``datetime``: naive UTC, written in the one form of the wire, ISO 8601 with ``Z``
  (:func:`flow.core.timestamps.iso`); read with or without the ``Z``;
- a ``StrEnum`` of :mod:`flow.core.vocabulary`: written as its value;
- ``X | None``: also ``null``.

A field with a default may be absent. :func:`decode` refuses anything else with
:class:`~flow.errors.InvalidInput` naming the field (``$.position``). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from flow.core import attributes
from flow.core.timestamps import iso, parse_iso
from flow.errors import InvalidInput

#: An id or a name (workflow id, activity class, queue): a string of 1 to 255 characters.
Name = Annotated[str, "name"]
#: A position or an attempt number: what the database's integer columns hold.
Count = Annotated[int, "count"]
#: A JSON object.
JsonObject = Mapping[str, Any]
#: Search attributes set by an activity, in :func:`flow.core.attributes.to_wire`'s form.
SearchAttributes = Annotated[Mapping[str, Any], "search attributes"]

R = TypeVar("R")


@dataclass(frozen=True)
class _Type:
    #: What a value must be, for the error: "must be <what>".
    what: str
    #: The value as the dataclass holds it; raises ValueError or TypeError if it is not one.
    decode: Callable[[Any], Any]
    #: The value as JSON holds it.
    encode: Callable[[Any], Any] = lambda value: value


def _checked(test: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def decode(value: Any) -> Any:
        if not test(value):
            raise ValueError(value)
        return value

    return decode


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        raise TypeError(value)
    return parse_iso(value)


def _search_attributes(value: Any) -> Any:
    """``value`` if it is search attributes in the wire form; a malformed one is refused
    here, never stored, with an :class:`InvalidInput` naming the attribute."""
    attributes.from_wire(value, path="$.attributes")
    return value


_TYPES: dict[Any, _Type] = {
    Name: _Type("a string of 1 to 255 characters", _checked(lambda v: isinstance(v, str) and 0 < len(v) <= 255)),
    Count: _Type("an integer from 0 to 2**31 - 1", _checked(lambda v: type(v) is int and 0 <= v < 2**31)),
    str: _Type("a string", _checked(lambda v: isinstance(v, str))),
    bool: _Type("true or false", _checked(lambda v: type(v) is bool)),
    float: _Type("a number of at least 0", _checked(lambda v: type(v) in (int, float) and math.isfinite(v) and v >= 0)),
    JsonObject: _Type("a JSON object", _checked(lambda v: isinstance(v, dict)), encode=dict),
    Any: _Type("any JSON value", lambda value: value),
    datetime: _Type("an ISO 8601 timestamp", _timestamp, encode=iso),
    SearchAttributes: _Type("search attributes", _search_attributes, encode=dict),
}


def _type_of(annotation: Any) -> _Type:
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        vocabulary = annotation
        return _Type(f"one of {', '.join(vocabulary)}", vocabulary, encode=lambda v: vocabulary(v).value)
    if annotation not in _TYPES:
        raise TypeError(f"no field of a message can be a {annotation!r}")
    return _TYPES[annotation]


@dataclass(frozen=True)
class _Field:
    name: str
    type: _Type
    #: ``None`` is a value it may have.
    nullable: bool
    #: It has no default, so the JSON must hold it.
    required: bool


def fields(cls: type) -> tuple[_Field, ...]:
    """``cls``'s fields with their types, read once (see :func:`_fields`; a plain function
    in front of the cache, whose argument typeshed wants ``Hashable``, which ``type[R]`` is not to mypy)."""
    return _fields(cls)


@functools.cache
def _fields(cls: type) -> tuple[_Field, ...]:
    """``cls``'s fields with their types, read once from its annotations (a field type
    this module cannot write raises ``TypeError`` here, at the first use)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    result = []
    for f in dataclasses.fields(cls):
        annotation, nullable = hints[f.name], False
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = typing.get_args(annotation)
            (annotation,) = [a for a in args if a is not type(None)]
            nullable = type(None) in args
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        result.append(_Field(f.name, _type_of(annotation), nullable, required))
    return tuple(result)


def encode(record: Any) -> dict[str, Any]:
    """``record``'s fields as plain JSON values, by name (``None`` as ``null``)."""
    values: dict[str, Any] = {}
    for f in fields(type(record)):
        value = getattr(record, f.name)
        values[f.name] = None if value is None else f.type.encode(value)
    return values


def decode(cls: type[R], values: Mapping[str, Any], *, others: Collection[str] = (), hint: str = "") -> R:
    """The ``cls`` that ``values`` hold. ``others`` are names the caller reads itself;
    ``hint`` is added to the error for an unknown name."""
    if not isinstance(values, Mapping):
        raise InvalidInput("$", "must be a JSON object of named fields")
    declared = fields(cls)
    known = {f.name for f in declared} | set(others)
    unknown = sorted(str(name) for name in values if name not in known)
    if unknown:
        raise InvalidInput(f"$.{unknown[0]}", "unknown field" + (f" ({hint})" if hint else ""))
    read: dict[str, Any] = {}
    for f in declared:
        if f.name not in values:
            if f.required:
                raise InvalidInput(f"$.{f.name}", f"required: {f.type.what}")
            continue
        value = values[f.name]
        if value is None and f.nullable:
            read[f.name] = None
            continue
        try:
            read[f.name] = f.type.decode(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"$.{f.name}", f"must be {f.type.what}" + (" or null" if f.nullable else "")) from None
    return cls(**read)
