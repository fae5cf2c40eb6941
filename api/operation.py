"""What a responder tells the OpenAPI document about itself: ``@operation(...)``.

Each ``on_<method>`` responder of a resource carries its own description, so adding
an endpoint is done in one place, the resource::

    @operation(
        "Start a workflow",
        body=start_request.SCHEMA,
        responses={201: Reply("Created", "Workflow")},
        errors=(503,),
    )
    def on_post(self, req, resp): ...

:mod:`api.openapi` walks the application's routes and reads these; what it can
derive it does not ask for: path parameters come from the URI template, ``401``
from the token check, ``400``/``413``/``415``/``422`` from having a JSON body.
A request body is the JSON Schema that the responder validates with, never a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

#: Attribute of a responder that holds its :class:`Operation`.
ATTRIBUTE = "__openapi__"

_Responder = TypeVar("_Responder", bound=Callable[..., Any])


@dataclass(frozen=True)
class Param:
    """A query parameter or a request header that the responder reads."""

    name: str
    #: JSON Schema of its value.
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation (its id, the responder's qualified name, e.g.
    ``"WorkflowResource.on_get"``) that a response's values feed, for stateful tests."""

    operation_id: str
    #: Parameter name -> runtime expression, e.g. ``{"workflow_id": "$response.body#/id"}``.
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class Reply:
    """One documented response."""

    description: str
    #: The name of a component in :data:`api.schemas.COMPONENTS`, a JSON Schema, or
    #: None for a response without a body.
    schema: str | Mapping[str, Any] | None = None
    media_type: str = "application/json"
    links: Mapping[str, Link] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One HTTP operation, as the responder describes it."""

    summary: str
    #: Success responses by status code.
    responses: Mapping[int, Reply]
    #: Error statuses the responder itself may answer (described in :mod:`api.openapi`).
    errors: tuple[int, ...] = ()
    #: JSON Schema of the JSON body the responder reads and validates with, or None.
    body: Mapping[str, Any] | None = None
    #: Whether a request must have that body (False: it may be left out).
    body_required: bool = True
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    #: Path parameter -> JSON Schema keywords that narrow what its URI template field
    #: says (e.g. a ``pattern``); fields that are not in the template are an error.
    path: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def operation(
    summary: str,
    *,
    responses: Mapping[int, Reply],
    errors: tuple[int, ...] = (),
    body: Mapping[str, Any] | None = None,
    body_required: bool = True,
    query: tuple[Param, ...] = (),
    headers: tuple[Param, ...] = (),
    path: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[_Responder], _Responder]:
    """Attach an :class:`Operation` to a responder (see the module's docstring)."""
    described = Operation(summary, responses, errors, body, body_required, query, headers, path or {})

    def decorate(responder: _Responder) -> _Responder:
        setattr(responder, ATTRIBUTE, described)
        return responder

    return decorate


def described(responder: Callable[..., Any]) -> Operation | None:
    """The :class:`Operation` attached to ``responder`` (a function or bound method), or None."""
    return getattr(responder, ATTRIBUTE, None)


__all__ = ["Link", "Operation", "Param", "Reply", "described", "operation"]
