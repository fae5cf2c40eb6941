"""What :class:`flow.client.Client` returns: frozen dataclasses read from the API's JSON.

Each names the fields a caller needs typed (the status as a
:class:`~flow.core.vocabulary.WorkflowStatus`, times as aware datetimes) and keeps the
whole reply in ``raw``, so a field the API adds later is there before this module
names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flow.core.priority import DEFAULT_PRIORITY
from flow.core.vocabulary import WorkflowStatus


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkflowSummary:
    """One workflow as ``GET /workflows`` lists it."""

    id: str
    name: str
    status: WorkflowStatus
    #: 1 (first) to 5 (last).
    priority: int
    definition_version: int | None
    created_at: datetime | None
    finished_at: datetime | None
    #: The workflow whose child step started this one, if any.
    parent_id: str | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status.ended

    @classmethod
    def from_json(cls, view: Mapping[str, Any]) -> WorkflowSummary:
        return cls(**_summary_fields(view))


def _summary_fields(view: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": view["id"],
        "name": view["name"],
        "status": WorkflowStatus(view["status"]),
        "priority": view.get("priority", DEFAULT_PRIORITY),
        "definition_version": view.get("definition_version"),
        "created_at": _time(view.get("created_at")),
        "finished_at": _time(view.get("finished_at")),
        "parent_id": view.get("parent_id"),
        "raw": view,
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a workflow (an activity, a map or its item, a sleep, a wait, a child)."""

    id: str
    name: str | None
    #: ``activity``, ``map``, ``item``, ``sleep``, ``wait`` or ``child``.
    kind: str
    status: str
    attempt: int
    output: Any
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, view: Mapping[str, Any]) -> Step:
        return cls(
            id=view["id"],
            name=view.get("name"),
            kind=view.get("kind", "activity"),
            status=view["status"],
            attempt=view.get("attempt", 0),
            output=view.get("output"),
            error=view.get("error"),
            started_at=_time(view.get("started_at")),
            finished_at=_time(view.get("finished_at")),
            raw=view,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workflow(WorkflowSummary):
    """One workflow as ``GET /workflows/{id}`` shows it."""

    input_data: Mapping[str, Any]
    #: Each step's output by step id, once the workflow finished.
    output: Any
    #: Why it failed (or was cancelled).
    error: str | None
    idempotency_key: str | None
    paused: bool
    #: Its search attributes (``{}`` when it has none, or the server keeps none).
    attributes: Mapping[str, Any]
    steps: tuple[Step, ...]

    @classmethod
    def from_json(cls, view: Mapping[str, Any]) -> Workflow:
        return cls(
            **_summary_fields(view),
            input_data=view.get("input_data") or {},
            output=view.get("output"),
            error=view.get("error"),
            idempotency_key=view.get("idempotency_key"),
            paused=bool(view.get("paused")),
            attributes=view.get("attributes") or {},
            steps=tuple(Step.from_json(a) for a in view.get("activities") or ()),
        )


@dataclasses.dataclass(frozen=True)
class SignalSent:
    """A signal the API accepted (202)."""

    workflow_id: str
    name: str
    #: The same for every send with the same idempotency key (or callback token).
    signal_id: str


@dataclasses.dataclass(frozen=True)
class EventSent:
    """An event ``POST /events`` accepted (202): a resend with the same ``id`` starts nothing new."""

    id: str
    type: str
    #: The server had seen this id already: the resend started nothing.
    duplicate: bool
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)
