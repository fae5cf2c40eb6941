"""Concurrency limits: how many attempts of the steps that share a limit (and a key) may
be out at once, and who waits in which order (docs/design.md, "Concurrency limits").

A definition entry (an activity, a map — for its items — or a child workflow step) may say

- ``"concurrency": {"limit": 3}``: at most 3 of this step's attempts (across every
  workflow of the definition) at once (the limit is named ``<definition>:<step id>``);
- ``"concurrency": {"key": "input.tenant", "limit": 2}``: at most 2 per value of the
  key, a JMESPath expression over ``{"input", "outputs", "item"}``;
- ``"concurrency": {"name": "payments"}``: a limit shared by every step that names it,
  its number set at run time (``PUT /limits/payments``); ``"limit"`` beside a name is
  the number to use until one is set.

A step whose turn comes with a limit is ``Queued`` (with its :class:`Claim`: the limit,
the key's value, the workflow's priority). The engines admit queued steps: a grant is a
``slot`` timer row, inserted in the admitting transaction; the workflow's actor
handles it like any timer and schedules the attempt, deleting the timer row in the same
commit that writes the step ``Scheduled``; or, when its key has room and nothing of it waits, the
commit that queues it writes it ``Scheduled`` at once (:mod:`flow.core.at_once`). So what holds a
slot is always a stored row
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
from datetime import datetime, timedelta
from typing import Any

from flow.core.expressions import MAX_EXPRESSION_CHARS

#: Highest limit a definition or ``PUT /limits`` may set.
MAX_LIMIT = 100_000
#: Longest limit name a definition or ``PUT /limits`` gives (an inline limit's name,
#: ``<definition>:<step id>``, may be longer: up to 257 characters, as the column allows).
MAX_NAME = 200
#: What a named limit's name is made of. An inline limit's name is
#: ``<definition>:<step id>``: the colon, which neither a definition's name, a step's id
#: nor a named limit's name may hold, keeps every inline limit apart from every other.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
#: What any limit's name is made of (``GET /limits/{name}`` takes an inline one's too).
ANY_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$"
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
#: Most starts per second a rate limit may allow, and fewest (one every ~17 minutes: a
#: slower rate's interval, times the largest burst, would run past the calendar).
MAX_RATE = 100_000.0
MIN_RATE = 0.001
#: JSON Schema of a definition entry's ``rate_limit`` key.
RATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "name": SCHEMA["properties"]["name"],
        "key": SCHEMA["properties"]["key"],
        "per_s": {"type": "number", "minimum": MIN_RATE, "maximum": MAX_RATE},
        "burst": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["per_s"]}],
}


@dataclass(frozen=True)
class StepLimit:
    """A step's ``concurrency`` or ``rate_limit`` as its definition says it. ``name``: the
    limit's name (an inline limit's is ``<definition>:<step id>``); ``limit``: a
    concurrency limit's number, ``per_s`` and ``burst`` a rate limit's (for a named
    limit, the numbers until ``PUT /limits`` sets them; None: none until then)."""

    name: str
    key: str | None = None
    limit: int | None = None
    #: Whether the definition named the limit (shared) or it is the step's own.
    shared: bool = False
    #: A rate limit (``rate_limit``), not a concurrency limit.
    rate: bool = False
    per_s: float | None = None
    burst: int | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], *, definition: str, step_id: str) -> StepLimit | None:
        rate = "rate_limit" in entry
        spec = entry.get("rate_limit" if rate else "concurrency")
        if spec is None:
            return None
        name = spec.get("name")
        return cls(
            name=name or f"{definition}:{step_id}",
            key=spec.get("key"),
            limit=spec.get("limit"),
            shared=bool(name),
            rate=rate,
            per_s=spec.get("per_s"),
            burst=spec.get("burst"),
        )

    def to_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {"name": self.name}
        for key in ("key", "limit", "per_s", "burst"):
            if getattr(self, key) is not None:
                stored[key] = getattr(self, key)
        if self.shared:
            stored["shared"] = True
        if self.rate:
            stored["rate"] = True
        return stored

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> StepLimit | None:
        if not stored:
            return None
        return cls(
            stored["name"],
            stored.get("key"),
            stored.get("limit"),
            bool(stored.get("shared")),
            bool(stored.get("rate")),
            stored.get("per_s"),
            stored.get("burst"),
        )


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
    #: A rate limit's claim: the definition's rate and burst (the ones set at run time
    #: override them). A rate-limited step holds nothing once let in.
    per_s: float | None = None
    burst: int | None = None
    rate: bool = False
    #: A workflow limit's strategy (:mod:`flow.core.workflow_limit`): ``queue`` or
    #: ``cancel_newest``; a step's claim always queues.
    strategy: str = "queue"


def key_text(value: Any) -> str:
    """A key's value as stored and compared: keys are text, as Hatchet's are — a string
    as it is, anything else as its JSON (so the number ``1`` and the string ``"1"`` are
    one key, as ``null`` and ``"null"`` are); a long one as its digest."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


@dataclass(frozen=True)
class Waiter:
    """A queued step, as the admitting transaction reads it."""

    workflow_id: str
    #: None: a queued workflow (:mod:`flow.core.workflow_limit`), not a step.
    position: int | None
    #: The attempt it waits to make (its current one plus one); a workflow's: its run.
    attempt: int
    partition: int
    key: str
    max: int | None
    priority: int
    queued_at: datetime
    per_s: float | None = None
    burst: int | None = None
    #: A workflow's limit's strategy (``cancel_newest``: what is not let in is cancelled).
    strategy: str = "queue"


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
        # Definitions (or versions of one) that give a named limit different numbers: the
        # smallest of the key's waiters', whoever waits first.
        numbers = [w.max for w in queue if w.max is not None]
        limit = number if number is not None else min(numbers, default=None)
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


def newest(waiters: Iterable[Waiter], let_in: Iterable[Waiter], number: int | None) -> list[Waiter]:
    """The waiting workflows of a ``cancel_newest`` workflow limit that :func:`admit` did not
    let in — they arrived while their key was full — and are to be cancelled; not when
    the key has no number at all (a named limit with none set holds everything back, as
    it holds steps, rather than cancel everything)."""
    admitted = {(w.workflow_id, w.position) for w in let_in}
    return [
        w
        for w in waiters
        if w.strategy == "cancel_newest"
        and (w.workflow_id, w.position) not in admitted
        and (number if number is not None else w.max) is not None
    ]


def displaced(
    waiters: Iterable[Waiter],
    let_in: Iterable[Waiter],
    holders: Iterable[Waiter],
    cancelling: Mapping[str, int],
    number: int | None,
) -> list[Waiter]:
    """The running workflows of a ``cancel_in_progress`` workflow limit to cancel so that
    its waiters :func:`admit` did not let in get their slots: per key, the oldest
    ``holders`` (workflows let in and running, without a cancel already on its way), one
    per such waiter less the ``cancelling`` ones already told. Not when the key has no
    number or 0 (no cancel would make room). The waiters stay queued and are let in by
    the slots the cancelled ones' ends give back.
    """
    admitted = {(w.workflow_id, w.position) for w in let_in}
    wanted: dict[str, int] = {}
    for w in waiters:
        limit = number if number is not None else w.max
        if w.strategy == "cancel_in_progress" and (w.workflow_id, w.position) not in admitted and limit:
            wanted[w.key] = wanted.get(w.key, 0) + 1
    by_key: dict[str, list[Waiter]] = {}
    for h in sorted(holders, key=_order_by_age):
        by_key.setdefault(h.key, []).append(h)
    chosen: list[Waiter] = []
    for key, count in wanted.items():
        chosen += by_key.get(key, [])[: max(count - cancelling.get(key, 0), 0)]
    return chosen


def _order_by_age(w: Waiter) -> tuple[datetime, str]:
    return (w.queued_at, w.workflow_id)


def pace(
    waiters: Iterable[Waiter],
    tats: Mapping[str, datetime],
    now: datetime,
    *,
    per_s: float | None = None,
    burst: int | None = None,
) -> tuple[list[Waiter], dict[str, datetime], datetime | None]:
    """Which of a rate limit's ``waiters`` may start now, by the GCRA per key.

    ``tats``: each key's theoretical arrival time (none: a key that has not started
    anything lately); ``per_s``/``burst``: the numbers set at run time (None: each key's
    first waiter's definition says them). A key lets in at most ``burst`` at once, then
    one every ``1/per_s`` seconds: over any window of ``w`` seconds at most
    ``burst + w * per_s`` start. Nothing is let in ahead of its time (an engine that
    falls behind then catches up by at most ``burst``, never compressing the rest). Returns
    what is let in (by priority, then age, within each key), the keys' new arrival
    times, and when the next waiter may start (None: nothing waits for time).
    """
    by_key: dict[str, list[Waiter]] = {}
    for w in sorted(waiters, key=_order):
        by_key.setdefault(w.key, []).append(w)
    granted: list[Waiter] = []
    changed: dict[str, datetime] = {}
    next_at: datetime | None = None
    for key, queue in by_key.items():
        rate = per_s if per_s is not None else queue[0].per_s
        if rate is None:
            continue  # a named rate limit with no rate anywhere: nothing starts
        interval = timedelta(seconds=1 / rate)
        tolerance = interval * ((burst if burst is not None else queue[0].burst or 1) - 1)
        tat = tats.get(key, now)
        for w in queue:
            at = max(now, tat - tolerance)
            if at > now:
                next_at = at if next_at is None else min(next_at, at)
                break
            granted.append(w)
            tat = max(tat, now) + interval
            changed[key] = tat
    return granted, changed, next_at


@dataclass(frozen=True)
class Gcra:
    """A rate of ``per_s`` events per second with a burst of ``burst`` at once: the GCRA's
    numbers and arithmetic over one key's theoretical arrival time (``tat``, seconds on
    whatever clock ``now`` is read from; None: nothing arrived lately). :func:`pace` does
    the same per key of a rate limit; a namespace's starts quota takes it one start at a
    time, in memory and in its stored row (:mod:`flow.persistence.namespaces` runs
    :meth:`take` as one SQL statement, with :attr:`interval_s` and :attr:`tolerance_s`).
    Over any window of ``w`` seconds at most ``burst + w * per_s`` are admitted."""

    per_s: float
    burst: float = 1.0

    @property
    def interval_s(self) -> float:
        """Seconds between two starts at the steady rate."""
        return 1.0 / self.per_s

    @property
    def tolerance_s(self) -> float:
        """How far ahead of ``now`` the arrival time may run and still admit: the burst."""
        return (self.burst - 1) * self.interval_s

    def take(self, tat: float | None, now: float) -> float | None:
        """The new arrival time if one more is admitted at ``now``; None: refused."""
        at = now if tat is None else max(tat, now)
        return at + self.interval_s if at - self.tolerance_s <= now else None

    def wait_s(self, tat: float | None, now: float) -> float:
        """Seconds from ``now`` until one more would be admitted (0: now)."""
        at = now if tat is None else max(tat, now)
        return max(at - self.tolerance_s - now, 0.0)


def rate_text(name: str, key: str, per_s: float | None, burst: int | None) -> str:
    """What a step queued for a rate limit waits for: ``waiting for email [acme]: 10 per s``."""
    which = f"{name} [{key}]" if key else name
    if per_s is None:
        return f"waiting for {which}: no rate set (PUT /limits/{name})"
    return f"waiting for {which}: {per_s:g} per s" + (f", burst {burst}" if burst and burst > 1 else "")


def _order(w: Waiter) -> tuple[int, datetime, str, int]:
    return (w.priority, w.queued_at, w.workflow_id, -1 if w.position is None else w.position)


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
    "Gcra",
    "StepLimit",
    "Waiter",
    "ANY_NAME_PATTERN",
    "MIN_RATE",
    "admit",
    "displaced",
    "key_text",
    "newest",
    "pace",
    "rate_text",
    "waiting_text",
]
