"""``sleep``: a step that waits ``sleep_s`` seconds, or until the time a JMESPath
expression gives (``sleep_until``), then succeeds.

A sleep is a timer row and nothing else while it waits: no thread, no message held
by a worker or the broker. When its turn comes the step is ``Waiting``, its output
``{"until": "<ISO 8601, UTC>"}`` says when it wakes (so recovery after a restart
finds the same due time without evaluating anything again), and a
:class:`~flow.core.vocabulary.TimerKind` ``sleep`` timer is set for that time, with
the step's attempt number so that a timer of an earlier run is recognised as stale.
A time already past wakes it at once. The workflow's end cancels the timer.

Pure: ``now`` is the event's time; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from flow.core import graph
from flow.core.commands import CancelTimer, Command, StartTimer
from flow.core.events import TimerFired
from flow.core.frozen import replace
from flow.core.kinds.base import Answer, Change, DueTimer, Line, Owed, PathOf, StepKind, Tokens, Turn
from flow.core.policy import MAX_TIMEOUT_S
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.steps import HistoryEntry
from flow.core.timestamps import iso
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind

#: The ``name`` a sleep step has in the API (it runs no ``BaseActivity``).
NAME = "sleep"


@dataclass(frozen=True)
class Sleep(StepSpec):
    """How long it sleeps (``sleep_s``), or the JMESPath expression giving when it wakes
    (``sleep_until``): one of the two."""

    kind: ClassVar[str] = "sleep"
    seconds: float | None = None
    until: str | None = None


class SleepKind(StepKind):
    """A durable sleep (see the module docstring)."""

    name: ClassVar[str] = "sleep"
    identity: ClassVar[tuple[str, ...]] = ("sleep_s", "sleep_until")
    properties: ClassVar[Mapping[str, Any]] = {
        "sleep_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
        "sleep_until": {"type": "string", "minLength": 1, "maxLength": graph.MAX_EXPRESSION_CHARS},
    }
    help: ClassVar[str] = "a sleep (sleep_s or sleep_until)"
    view_schema: ClassVar[Mapping[str, Any]] = {
        "sleep_s": {"type": ["number", "null"], "description": "A sleep: how long it waits."},
        "sleep_until": {
            "type": ["string", "null"],
            "description": "A sleep: the JMESPath expression giving when it wakes. A Waiting sleep's output "
            'says when: {"until": ISO 8601}.',
        },
    }
    lines: ClassVar[Mapping[HistoryType, Line]] = {
        HistoryType.START_SLEEP: lambda data: f"sleeps until {data.get('until')}"
    }
    timer_lines: ClassVar[Mapping[TimerKind, str]] = {TimerKind.SLEEP: "woke"}

    def default_name(self, entry: Mapping[str, Any]) -> str:
        return NAME

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        if "sleep_until" not in entry:
            return []
        return graph.expression_problems(entry["sleep_until"], path("sleep_until"))

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        return Sleep(entry.get("sleep_s"), entry.get("sleep_until"))

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Sleep)
        stored: dict[str, Any] = {}
        if spec.seconds is not None:
            stored["sleep_s"] = spec.seconds
        if spec.until is not None:
            stored["sleep_until"] = spec.until
        return stored

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        if graph.get("sleep_s") is None and graph.get("sleep_until") is None:
            return None
        return Sleep(graph.get("sleep_s"), graph.get("sleep_until"))

    # -- decide ----------------------------------------------------------------------------

    def start(self, turn: Turn, position: int) -> graph.Verdict:
        """Set the sleep ``Waiting`` with its timer, or fail it (``sleep_until`` gave no
        usable time)."""
        step = turn.activities[position]
        until = _wake_time(step, turn)
        if isinstance(until, str):
            return graph.Verdict(fail=until)
        attempt = step.attempt + 1
        turn.activities[position] = replace(
            step,
            status=ActivityStatus.WAITING,
            attempt=attempt,
            scheduled_at=turn.now,
            started_at=turn.now,
            finished_at=None,
            output={"until": iso(until)},
        )
        # Rounded up: a timer never wakes the step before its time (due = the event's time + delay).
        delay_ms = max(0, -((turn.now - until) // timedelta(milliseconds=1)))
        timer = StartTimer(TimerKind.SLEEP, delay_ms, position, attempt)
        entry = HistoryEntry(HistoryType.START_SLEEP, position, {"until": iso(until)})
        turn.scheduled.append((position, [timer], entry))
        return graph.WAIT

    def on_timer(
        self, state: WorkflowState, step: ActivityState, event: TimerFired, history: list[HistoryEntry]
    ) -> Answer:
        if event.kind != TimerKind.SLEEP or state.status.ended or step.status is not ActivityStatus.WAITING:
            return None
        return Change(replace(step, status=ActivityStatus.SUCCEEDED, finished_at=event.occurred_at))

    def end_of_run(self, step: ActivityState) -> list[Command]:
        if step.status is ActivityStatus.WAITING:
            return [CancelTimer(TimerKind.SLEEP, step.position, step.attempt)]
        return []

    def owed(self, state: WorkflowState, step: ActivityState) -> Owed:
        until = wake_time(step) if step.status is ActivityStatus.WAITING else None
        if until is None:
            return [], []
        return [], [DueTimer(TimerKind.SLEEP, step.position, step.attempt, until)]

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = step.spec
        assert isinstance(spec, Sleep)
        return {"sleep_s": spec.seconds, "sleep_until": spec.until}


def wake_time(step: ActivityState) -> datetime | None:
    """When a ``Waiting`` sleep wakes (naive UTC), read from its output."""
    until = step.output.get("until") if isinstance(step.output, dict) else None
    return _parse(until) if isinstance(until, str) else None


def _wake_time(step: ActivityState, turn: Turn) -> datetime | str:
    """The time to wake (naive UTC), or why there is none."""
    spec = step.spec
    assert isinstance(spec, Sleep)
    if spec.seconds is not None:
        return turn.now + timedelta(seconds=spec.seconds)
    assert spec.until is not None
    expression = spec.until
    try:
        value = graph.evaluate(expression, graph.condition_context(turn.state.input_data, turn.activities))
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return graph.unevaluable("sleep_until", expression, e)
    until = _parse(value) if isinstance(value, str) else None
    if until is None:
        return graph.storable(
            f"sleep_until {expression!r} gave {graph.quoted(value)}, not an ISO 8601 time (2026-12-01T09:00:00Z)"
        )
    if until - turn.now > timedelta(seconds=MAX_TIMEOUT_S):
        return f"sleep_until {expression!r} gave {iso(until)}, more than {MAX_TIMEOUT_S // 86400} days ahead"
    return until


def _parse(text: str) -> datetime | None:
    """An ISO 8601 time as naive UTC; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        # Near year 1 or 9999 the offset can carry it off the calendar: not a usable time.
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError):
        return None


SLEEP = SleepKind()

__all__ = ["NAME", "SLEEP", "Sleep", "SleepKind", "wake_time"]
