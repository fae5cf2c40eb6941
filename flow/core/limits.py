"""Concurrency limits: how many attempts of the steps that share a limit (and a key) may
be out at once, and who waits in which order (docs/design.md, "Concurrency limits").

A definition entry (an activity, a map — for its items — or a child workflow step) may say

- ``"concurrency": {"limit": 3}``: at most 3 of this step's attempts (across every
  workflow of the definition) at once;
- ``"concurrency": {"key": "input.tenant", "limit": 2}``: at most 2 per value of the
  key, a JMESPath expression over ``{"input", "outputs", "item"}``;
- ``"concurrency": {"name": "payments"}``: a limit shared by every step that names it,
  its number set at run time (``PUT /limits/payments``); ``"limit"`` beside a name is
  the number to use until one is set.

A step whose turn comes with a limit is ``Queued`` (with its :class:`Claim`: the limit,
the key's value, the workflow's priority). The engines admit queued steps: a grant is a
``slot`` timer row, inserted in the admitting transaction; the workflow's actor
handles it like any timer and schedules the attempt, deleting the timer row in the same
commit that writes the step ``Scheduled``. So what holds a slot is always a stored row
— a grant not yet handled, or a step in flight — and a slot is given back by whatever
commit ends the attempt or deletes the workflow, with nothing to leak.

This module is the pure part: the definition's key, the claim a queued step makes, and
:func:`admit`, the order in which waiting steps are let in (fair across keys, then by
priority and age). The steps' rules are their kinds' (:mod:`flow.core.kinds.activity`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flow.core.expressions import MAX_EXPRESSION_CHARS

#: Highest limit a definition or ``PUT /limits`` may set.
MAX_LIMIT = 100_000
#: Longest limit name a definition or ``PUT /limits`` gives (an inline limit's name,
#: ``<definition>.<step id>``, may be longer: up to 257 characters, as the column allows).
MAX_NAME = 200
#: What a limit's name is made of (an inline limit's name is too).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"
#: A key's value is stored as text of at most this many characters (longer ones by digest).
MAX_KEY_CHARS = 200
#: Priorities: 1 is let in first, 5 last.
PRIORITIES = range(1, 6)
DEFAULT_PRIORITY = 3

#: JSON Schema of a definition entry's ``concurrency`` key.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN},
        "key": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_CHARS},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["limit"]}],
}


@dataclass(frozen=True)
class StepLimit:
    """A step's ``concurrency`` as its definition says it. ``name``: the limit's name (an
    inline limit's is ``<definition>.<step id>``); ``limit``: its number (for a named
    limit, the number until ``PUT /limits`` sets one; None: none until then)."""

    name: str
    key: str | None = None
    limit: int | None = None
    #: Whether the definition named the limit (shared) or it is the step's own.
    shared: bool = False

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], *, definition: str, step_id: str) -> StepLimit | None:
        spec = entry.get("concurrency")
        if spec is None:
            return None
        name = spec.get("name")
        return cls(
            name=name or f"{definition}.{step_id}", key=spec.get("key"), limit=spec.get("limit"), shared=bool(name)
        )

    def to_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {"name": self.name}
        if self.key is not None:
            stored["key"] = self.key
        if self.limit is not None:
            stored["limit"] = self.limit
        if self.shared:
            stored["shared"] = True
        return stored

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> StepLimit | None:
        if not stored:
            return None
        return cls(stored["name"], stored.get("key"), stored.get("limit"), bool(stored.get("shared")))


@dataclass(frozen=True)
class Claim:
    """What a queued step waits for, and what it holds once let in: a slot of the limit
    ``limit`` for the key value ``key`` ("" without a key). ``max``: the definition's
    number (a named limit's number set at run time overrides it); ``priority``: the
    workflow's, 1 first."""

    limit: str
    key: str
    max: int | None
    priority: int = DEFAULT_PRIORITY


def key_text(value: Any) -> str:
    """A key's value as stored: a string as it is, anything else as its JSON; a long one
    as its digest (two keys share a slot only if their values are equal)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


@dataclass(frozen=True)
class Waiter:
    """A queued step, as the admitting transaction reads it."""

    workflow_id: str
    position: int
    #: The attempt it waits to make (its current one plus one).
    attempt: int
    partition: int
    key: str
    max: int | None
    priority: int
    queued_at: datetime


def admit(waiters: Iterable[Waiter], held: Mapping[str, int], number: int | None) -> list[Waiter]:
    """Which of a limit's ``waiters`` are let in now, in the order they are let in.

    ``held``: slots held per key; ``number``: the limit's number set at run time (None:
    each waiter's definition says it). Each key has ``number`` slots; what waits is let in
    round-robin between keys (so one key's 10,000 do not starve another's 5), and within a
    key by priority, then age. A lowered limit stops nothing that holds a slot: its key
    lets nothing in until it holds fewer than the new number.
    """
    by_key: dict[str, list[Waiter]] = {}
    for w in sorted(waiters, key=_order):
        by_key.setdefault(w.key, []).append(w)
    free: dict[str, int] = {}
    for key, queue in by_key.items():
        limit = number if number is not None else queue[0].max
        free[key] = 0 if limit is None else max(limit - held.get(key, 0), 0)
    # Keys in the order of their first waiter; each round lets in one per key.
    keys = sorted(by_key, key=lambda k: _order(by_key[k][0]))
    granted: list[Waiter] = []
    taken = dict.fromkeys(keys, 0)
    while keys:
        still = []
        for key in keys:
            if taken[key] < free[key] and taken[key] < len(by_key[key]):
                granted.append(by_key[key][taken[key]])
                taken[key] += 1
                still.append(key)
        keys = still
    return granted


def _order(w: Waiter) -> tuple[int, datetime, str, int]:
    return (w.priority, w.queued_at, w.workflow_id, w.position)


def waiting_text(name: str, key: str, held: int, number: int | None) -> str:
    """What a queued step says it waits for: ``waiting for payments: 3 of 3 held``."""
    which = f"{name} [{key}]" if key else name
    if number is None:
        return f"waiting for {which}: no limit set (PUT /limits/{name})"
    return f"waiting for {which}: {held} of {number} held"


__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_LIMIT",
    "SCHEMA",
    "Claim",
    "StepLimit",
    "Waiter",
    "admit",
    "key_text",
    "waiting_text",
]
