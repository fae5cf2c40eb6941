"""``replace`` for the core's frozen dataclasses: :func:`dataclasses.replace`'s result,
without its walk over every field at every call.

``dataclasses.replace`` reads each field of the class (``ActivityState`` has 33) with
``getattr``, then calls ``__init__`` with all of them; a step's decision replaces a few
records, so the engine spent more of its CPU per step there than in any other function
of the core (yappi, issue 25). This copies the instance's ``__dict__``, applies the
changes and runs ``__post_init__`` as ``__init__`` would have: the same record, since
the core's dataclasses hold only their fields (no ``InitVar``, no ``init=False`` field,
no cached property) and derive nothing anywhere else. A class that is not like that
goes through ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")

#: Per class: whether its instances can be copied as their ``__dict__`` (see the module docstring).
_PLAIN: dict[type, frozenset[str] | None] = {}


def _plain_fields(cls: type) -> frozenset[str] | None:
    """The init fields of ``cls`` when a copy of ``__dict__`` is a correct replace, else None."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__slots__"):
        return None
    every = getattr(cls, "__dataclass_fields__", {})
    fields = dataclasses.fields(cls)
    if len(fields) != len([f for f in every.values() if f._field_type is not dataclasses._FIELD_CLASSVAR]):  # type: ignore[attr-defined]
        return None  # an InitVar
    if not all(f.init for f in fields):
        return None
    post = getattr(cls, "__post_init__", None)
    if post is not None and len(inspect.signature(post).parameters) != 1:
        return None
    return frozenset(f.name for f in fields)


def replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)``, faster for the core's records."""
    cls = type(obj)
    try:
        names = _PLAIN[cls]
    except KeyError:
        names = _PLAIN[cls] = _plain_fields(cls)
    if names is None or not changes.keys() <= names:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    new = object.__new__(cls)
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    post = getattr(new, "__post_init__", None)
    if post is not None:
        post()
    return new
