"""Cron schedules, the pure part: what a schedule is, when it ticks, and what one pass
of its engine does with the ticks that are due (docs/design.md, "Schedules").

No clock and no I/O: "now", the schedule's last handled tick and whether its previous
run is still in progress arrive as data; :func:`plan` answers which ticks to start,
which to skip (and why), which to hold back, and the tick to wait for next. Every
time here is naive UTC, as everywhere in the process; the schedule's time zone is
used only to find its ticks.

The cron expression is read by ``cronsim`` (Healthchecks.io's evaluator), chosen over
``croniter`` because it is small, pure Python with no dependency, works with
``zoneinfo`` directly, and documents its daylight-saving rule, which is Debian
cron's: a job at a fixed time (minute and hour fields not ``*``) that falls in the
hour skipped in spring runs once at the first valid time after it, and once, not
twice, in the hour repeated in autumn; a job whose hour is ``*`` (every N minutes)
runs by elapsed time, so it neither stops nor doubles either. Ticks are kept strictly
increasing in UTC, so two times that daylight saving folds onto one instant fire once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flow.core import attributes, validation
from flow.core.definition import NAME_PATTERN, is_definition_name
from flow.core.priority import DEFAULT_PRIORITY
from flow.core.start_request import PRIORITY_SCHEMA, check_priority
from flow.core.timestamps import iso
from flow.errors import InvalidInput


class Overlap(StrEnum):
    """What a tick does while the schedule's previous run is still in progress."""

    #: The tick is skipped (and counted).
    SKIP = "skip"
    #: The first such tick waits, and starts when the running workflow ends; later ones are skipped.
    BUFFER_ONE = "buffer_one"
    #: The tick starts another workflow anyway.
    ALLOW_ALL = "allow_all"


class RunTrigger(StrEnum):
    """Why a schedule started a workflow."""

    CRON = "cron"
    MANUAL = "manual"


#: Longest catch-up window: 31 days.
MAX_CATCH_UP_S = 31 * 86400
#: A tick this late is still on time whatever ``catch_up_s`` says: the engine looks
#: for due ticks about once a second, and a busy machine must not make that a miss.
MIN_LATENESS_S = 10
#: Most workflows one pass starts for one schedule (the rest are started next pass).
MAX_STARTS_PER_PASS = 100
#: Most ticks one pass looks at for one schedule (a long outage of a schedule that
#: ticks every second is counted over several passes, exactly).
MAX_TICKS_PER_PASS = 100_000
#: Namespace of the ids of workflows started by ticks (:func:`tick_workflow_id`).
TICK_NAMESPACE = uuid.UUID("5c3e2f0a-9b1d-4f6e-8a7c-2d4b6e8f0a1c")

#: What a schedule's name must be (as a definition's: :data:`NAME_PATTERN`), checked on
#: every route and for every file's stem, so that a name stored can always be addressed.
SCHEDULE_NAME_RULE = "must be 1 to 128 characters: a letter first, then letters, digits, '_', '.' or '-'"

_TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$"
_TIMEZONE = re.compile(_TIMEZONE_PATTERN.replace("$", r"\Z"))

#: JSON Schema of a schedule (``PUT /schedules/{name}`` and schedule files).
#: Descriptions read after "must be" (see :mod:`flow.core.validation`).
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "A cron schedule",
    "type": "object",
    "required": ["workflow", "cron"],
    "additionalProperties": False,
    "properties": {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": f"the schedule's name, matching {NAME_PATTERN} (the URL's when left out)",
        },
        "workflow": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "the name of a registered workflow definition",
        },
        "input_data": {
            "type": ["object", "null"],
            "description": "a JSON object, the input of every workflow it starts (null is the same as {})",
        },
        "cron": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "a cron expression: 5 fields (minute hour day-of-month month day-of-week), "
            "or 6 with seconds first",
        },
        "timezone": {
            "type": "string",
            "pattern": _TIMEZONE_PATTERN,
            "description": 'an IANA time zone name such as "Europe/Paris" (default "UTC")',
        },
        "overlap": {
            "enum": [o.value for o in Overlap],
            "description": "one of " + ", ".join(o.value for o in Overlap),
        },
        "catch_up_s": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_CATCH_UP_S,
            "description": f"an integer from 0 to {MAX_CATCH_UP_S}: how late a missed tick may still start",
        },
        "paused": {"type": "boolean", "description": "true or false"},
        # The start request's own field: a schedule's workflows are started as a request would be.
        "priority": PRIORITY_SCHEMA,
        # Also the start request's: the search attributes of every workflow it starts.
        "attributes": attributes.VALUES_SCHEMA,
    },
    "examples": [
        {
            "workflow": "DummyWorkflow",
            "input_data": {"report": "daily"},
            "cron": "0 9 * * MON-FRI",
            "timezone": "Europe/Paris",
            "overlap": "skip",
            "catch_up_s": 3600,
            "paused": False,
            "priority": 2,
        }
    ],
}
_VALIDATOR = validation.validator(SCHEMA)


@dataclass(frozen=True)
class ScheduleSpec:
    """What a user sets on a schedule (the body of ``PUT /schedules/{name}``)."""

    name: str
    #: The definition each tick starts a workflow of.
    workflow: str
    cron: str
    #: The input of every workflow it starts.
    input_data: Mapping[str, Any] = field(default_factory=dict)
    #: IANA time zone the cron expression is read in.
    timezone: str = "UTC"
    overlap: Overlap = Overlap.SKIP
    #: A tick missed (everything was down) by at most this many seconds still starts.
    catch_up_s: int = 60
    paused: bool = False
    #: The priority of every workflow it starts: 1 (first) to 5 (last).
    priority: int = DEFAULT_PRIORITY
    #: The search attributes of every workflow it starts (JSON; checked against the
    #: definition's declarations when the schedule is put, and at each start).
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The body that makes this schedule (``PUT``), and the stored spec."""
        return {
            "name": self.name,
            "workflow": self.workflow,
            "input_data": dict(self.input_data),
            "cron": self.cron,
            "timezone": self.timezone,
            "overlap": self.overlap.value,
            "catch_up_s": self.catch_up_s,
            "paused": self.paused,
            "priority": self.priority,
            "attributes": dict(self.attributes),
        }

    def ticks_change(self, other: ScheduleSpec) -> bool:
        """Whether ``other`` ticks at other times than this one."""
        return (self.cron, self.timezone) != (other.cron, other.timezone)


def check_name(name: Any) -> None:
    """:class:`InvalidInput` (path ``name``) unless ``name`` can name a schedule."""
    if not is_definition_name(name):
        raise InvalidInput("name", SCHEDULE_NAME_RULE)


def parse_schedule(body: Any, *, name: str) -> ScheduleSpec:
    """Validate a decoded schedule body named ``name``; :class:`InvalidInput` naming the field."""
    check_name(name)
    validation.check(_VALIDATOR, body)
    if body.get("name", name) != name:
        raise InvalidInput("$.name", f"must be {name!r}, the schedule's name")
    timezone = body.get("timezone", "UTC")
    zone = _zone(timezone)
    cron = " ".join(body["cron"].split())
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=zone))
    except (CronSimError, ValueError, KeyError, IndexError) as e:
        raise InvalidInput("$.cron", f"is not a cron expression ({e or 'cannot be read'})") from e
    spec = ScheduleSpec(
        name=name,
        workflow=body["workflow"],
        cron=cron,
        input_data=dict(body.get("input_data") or {}),
        timezone=timezone,
        overlap=Overlap(body.get("overlap", Overlap.SKIP)),
        catch_up_s=body.get("catch_up_s", 60),
        paused=body.get("paused", False),
        priority=check_priority(body.get("priority"), path="$.priority"),
        attributes=dict(body.get("attributes") or {}),
    )
    if next_tick(spec, datetime(2000, 1, 1)) is None:
        raise InvalidInput("$.cron", "never matches a date (e.g. February 30)")
    return spec


def _zone(name: str) -> ZoneInfo:
    if not _TIMEZONE.match(name):
        raise InvalidInput("$.timezone", SCHEMA["properties"]["timezone"]["description"])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InvalidInput("$.timezone", f"{name!r} is not a time zone this system knows") from e


# -- ticks -------------------------------------------------------------------------------


def is_wall_clock(cron: str) -> bool:
    """Whether ``cron`` names times of the day (its hour field is not ``*``-led), read
    on the wall clock across daylight saving; else it runs by elapsed time. Five
    fields or six (seconds first) alike: cronsim applies Debian cron's rule to five
    fields only, so the rule is applied here, for every expression."""
    fields = cron.split()
    return not fields[len(fields) - 4].startswith("*")


def _first_valid(wall: datetime, zone: ZoneInfo) -> datetime:
    """``wall`` (a naive local time) as an aware time: the first time the clock shows
    it when it shows it twice, the first valid time after it when it never does."""
    aware = wall.replace(tzinfo=zone, fold=0)
    while aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        # In the hour daylight saving skips: on to the next whole minute (03:00:00 for
        # 02:30:15), as cronsim does for five fields.
        wall = (wall + timedelta(minutes=1)).replace(second=0)
        aware = wall.replace(tzinfo=zone, fold=0)
    return aware


def ticks(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """The schedule's ticks strictly after ``after`` (naive UTC), in order, as naive UTC.

    An expression with a fixed hour (:func:`is_wall_clock`) is iterated on the wall
    clock and each wall time placed by :func:`_first_valid`; one whose hour is ``*``
    is iterated in elapsed time (cronsim then does no daylight-saving fix-up)."""
    zone = ZoneInfo(spec.timezone)
    start = after.replace(tzinfo=UTC).astimezone(zone)
    wall_clock = spec.timezone != "UTC" and is_wall_clock(spec.cron)
    previous = after
    # cronsim's iteration ends by itself when it finds nothing within 50 years.
    found = CronSim(spec.cron, start.replace(tzinfo=None) if wall_clock else start)
    for local in found:
        if wall_clock:
            local = _first_valid(local, zone)
        tick = local.astimezone(UTC).replace(tzinfo=None)
        # Strictly increasing: a time the clock repeats, or one that daylight saving
        # moves onto another tick's instant, fires once.
        if tick > previous:
            previous = tick
            yield tick


def next_tick(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``, or None when there is none."""
    return next(ticks(spec, after), None)


def tick_workflow_id(schedule: str, tick: datetime) -> str:
    """The id of the workflow a tick starts: derived from the schedule's name and the
    tick's time, so that every engine that fires the tick names the same workflow and
    a second start of it finds the first (docs/design.md, "Schedules")."""
    return str(uuid.uuid5(TICK_NAMESPACE, f"{schedule}@{iso(tick)}"))


# -- one pass ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TickPlan:
    """What one pass does for one schedule (see :func:`plan`)."""

    #: Ticks whose workflow to start now, in order (a buffered tick first).
    start: tuple[datetime, ...] = ()
    #: Ticks older than the catch-up window: skipped.
    missed: int = 0
    #: Ticks that came while the previous run was in progress: skipped.
    overlapped: int = 0
    #: Ticks whose workflow could never start (set by the shell: the definition is gone).
    failed: int = 0
    #: The latest tick skipped, if any.
    last_skipped_at: datetime | None = None
    #: Every tick up to this one is handled (started, skipped or buffered).
    last_tick_at: datetime | None = None
    #: The tick waiting for the running workflow to end (``buffer_one``).
    buffered_tick_at: datetime | None = None
    #: The next tick to look at (at or before now when this pass stopped early).
    next_tick_at: datetime | None = None

    @property
    def skipped(self) -> int:
        return self.missed + self.overlapped + self.failed


def window_start(spec: ScheduleSpec, now: datetime) -> datetime:
    """The oldest a tick may be and still start."""
    return now - timedelta(seconds=max(spec.catch_up_s, MIN_LATENESS_S))


def window_ticks(spec: ScheduleSpec, *, last_tick_at: datetime, now: datetime) -> list[datetime]:
    """The due ticks that a pass may start (those in the catch-up window), at most
    :data:`MAX_STARTS_PER_PASS` + 1: the shell asks which of them were started already."""
    found: list[datetime] = []
    for tick in ticks(spec, max(last_tick_at, window_start(spec, now))):
        if tick > now or len(found) > MAX_STARTS_PER_PASS:
            break
        found.append(tick)
    return found


def plan(
    spec: ScheduleSpec,
    *,
    now: datetime,
    last_tick_at: datetime,
    buffered_tick_at: datetime | None = None,
    running: bool = False,
    started: frozenset[datetime] = frozenset(),
) -> TickPlan:
    """One pass over a schedule's due ticks (those after ``last_tick_at``, up to ``now``).

    ``running``: the schedule's previous run is still in progress. ``started``: ticks
    whose workflow exists already (another engine, or an earlier pass that stopped
    before it recorded them, started it): they count as started whatever the overlap
    rule says, and starting them again is a no-op.

    Rules, tick by tick in order: a tick older than the catch-up window is *missed*;
    otherwise it starts unless the previous run is in progress, when ``overlap`` decides
    (skip it; hold the first one back until the run ends; start it anyway). A held-back
    tick starts first thing in the first pass that finds the run ended.
    """
    start: list[datetime] = []
    buffered = buffered_tick_at
    if buffered is not None and (not running or buffered in started):
        start.append(buffered)
        running = True
        buffered = None
    oldest = window_start(spec, now)
    missed = overlapped = 0
    last_skipped: datetime | None = None
    handled = last_tick_at
    upcoming: datetime | None = None
    for looked, tick in enumerate(ticks(spec, last_tick_at)):
        if tick > now or looked >= MAX_TICKS_PER_PASS or len(start) >= MAX_STARTS_PER_PASS:
            upcoming = tick
            break
        handled = tick
        if tick < oldest:
            missed += 1
            last_skipped = tick
        elif tick in started or spec.overlap is Overlap.ALLOW_ALL or not running:
            start.append(tick)
            running = True
        elif spec.overlap is Overlap.BUFFER_ONE and buffered is None:
            buffered = tick
        else:
            overlapped += 1
            last_skipped = tick
    return TickPlan(
        start=tuple(start),
        missed=missed,
        overlapped=overlapped,
        last_skipped_at=last_skipped,
        last_tick_at=handled,
        buffered_tick_at=buffered,
        next_tick_at=upcoming,
    )


__all__ = [
    "MAX_CATCH_UP_S",
    "SCHEDULE_NAME_RULE",
    "SCHEMA",
    "Overlap",
    "RunTrigger",
    "ScheduleSpec",
    "TickPlan",
    "check_name",
    "next_tick",
    "parse_schedule",
    "plan",
    "tick_workflow_id",
    "ticks",
    "window_ticks",
]
