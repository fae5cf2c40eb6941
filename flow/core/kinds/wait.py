"""``wait``: a step that waits for a named signal (``wait_for``), and the workflow's inbox.

- A signal that arrives while a step waits for its name ends that step (the earliest
  such step): the step succeeds with the signal's payload as its output.
- A signal that arrives before any step waits for it is *kept* in the inbox, and the
  first step that waits for its name takes it when its turn comes (Temporal's
  guarantee: no signal is lost because it came early).
- A signal is recorded once: a repeated send with the same id (the sender's
  idempotency key) changes nothing. A signal for an ended workflow is dropped (the
  API answers 409 before that; a race still ends here, recorded).
- A signal sent with a callback token (:mod:`flow.core.callback_tokens`) names its step
  and run: only that step takes it, in that run, and once. For a step that has ended,
  or of an earlier run, it is dropped (the API answers 410 before that; a race ends here).
- A wait with ``timeout_s`` fails when no signal came in time, as an activity's
  timeout does, and ``required`` decides the rest.

Pure: the inbox is part of the state, stored in the same commit as the history entry
that records the signal (a row per signal, written when it arrives and when a step
takes it: docs/design.md, "Waiting: sleeps and signals"). The payloads kept together
are bounded (``WorkflowState.inbox_limit``); a signal that would pass the bound is
dropped with the reason (the API refuses it with 413 before that).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flow.core import graph
from flow.core.commands import CancelTimer, Command, StartTimer
from flow.core.events import SignalReceived, TimerFired
from flow.core.frozen import replace
from flow.core.kinds.base import Answer, Change, DueTimer, Line, Owed, StepKind, Tokens, Turn
from flow.core.policy import MAX_TIMEOUT_S
from flow.core.state import ActivityState, Signal, StepSpec, WorkflowState
from flow.core.steps import HistoryEntry, with_activity
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind

#: The ``name`` a wait step has in the API (it runs no ``BaseActivity``).
NAME = "wait"
#: Most signals a workflow keeps (taken ones included, so that repeats are recognised).
MAX_SIGNALS = 1000
#: What a signal's name looks like.
NAME_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN.replace("$", r"\Z"))
#: A wait's ``choices``: the answers the web page offers as buttons, each sending the
#: payload ``{"choice": <answer>}``. What one looks like, and how many a wait may offer.
CHOICE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$"
MAX_CHOICES = 10


def is_signal_name(value: str) -> bool:
    return _NAME.match(value) is not None


@dataclass(frozen=True)
class Wait(StepSpec):
    """The signal's name that ends it, how long it waits for one (None: for ever), and
    the answers the web page offers as buttons (each sends ``{"choice": ...}``)."""

    kind: ClassVar[str] = "wait"
    signal: str
    timeout_s: float | None = None
    choices: tuple[str, ...] | None = None


def waits_for(step: ActivityState) -> str | None:
    """The signal ``step`` waits for (or waited for); None: it is no wait."""
    return step.spec.signal if isinstance(step.spec, Wait) else None


def _start_line(data: Mapping[str, Any]) -> str:
    at_most = f" (at most {data['timeout_s']} s)" if data.get("timeout_s") else ""
    return f"waits for the signal {data.get('signal')}{at_most}"


class WaitKind(StepKind):
    """A wait for a signal (see the module docstring)."""

    name: ClassVar[str] = "wait"
    identity: ClassVar[tuple[str, ...]] = ("wait_for",)
    properties: ClassVar[Mapping[str, Any]] = {
        "wait_for": {"type": "string", "pattern": NAME_PATTERN},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
        "choices": {
            "type": "array",
            "minItems": 2,
            "maxItems": MAX_CHOICES,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": CHOICE_PATTERN},
        },
    }
    foreign: ClassVar[Mapping[str, str]] = {
        "timeout_s": "timeout_s is a wait's (wait_for) timeout",
        "choices": "choices is a wait's (wait_for) answers, offered as buttons",
    }
    help: ClassVar[str] = "a wait for a signal (wait_for)"
    view_schema: ClassVar[Mapping[str, Any]] = {
        "wait_for": {"type": ["string", "null"], "description": "A wait: the signal's name that ends it."},
        "timeout_s": {"type": ["number", "null"], "description": "A wait: how long it waits for the signal."},
        "choices": {
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": 'A wait: the answers the web page offers as buttons, each sending {"choice": ...}.',
        },
        "callback_token": {
            "type": ["string", "null"],
            "description": "A wait that has not ended, in a running workflow: the token a third party "
            "POSTs to /signals/{token} to send its signal (once). Activities see it too, as "
            'outputs[<wait id>] = {"callback_token": ...}.',
        },
    }
    lines: ClassVar[Mapping[HistoryType, Line]] = {
        HistoryType.START_WAIT: _start_line,
        HistoryType.END_WAIT: lambda data: (
            f"took the signal {data.get('signal')}" + (" (kept from before)" if data.get("kept") else "")
        ),
        HistoryType.SIGNAL_RECEIVED: lambda data: f"signal {data.get('name')} received",
        HistoryType.KEEP_SIGNAL: lambda data: f"signal {data.get('name')} kept until a step waits for it",
    }

    def default_name(self, entry: Mapping[str, Any]) -> str:
        return NAME

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        choices = tuple(entry["choices"]) if "choices" in entry else None
        return Wait(entry["wait_for"], entry.get("timeout_s"), choices)

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Wait)
        stored: dict[str, Any] = {"wait_for": spec.signal, "timeout_s": spec.timeout_s}
        if spec.choices is not None:
            stored["choices"] = list(spec.choices)
        return stored

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        if graph.get("wait_for") is None:
            return None
        choices = tuple(graph["choices"]) if "choices" in graph else None
        return Wait(graph["wait_for"], graph.get("timeout_s"), choices)

    # -- decide ----------------------------------------------------------------------------

    def start(self, turn: Turn, position: int) -> graph.Verdict:
        """Take a kept signal for the wait (it succeeds), or wait (with its timeout's timer)."""
        step = turn.activities[position]
        spec = _wait(step)
        attempt = step.attempt + 1
        step = replace(step, attempt=attempt, scheduled_at=turn.now, started_at=turn.now, finished_at=None, output=None)
        kept = next((i for i, s in enumerate(turn.inbox) if s.is_for(spec.signal, position, turn.state.run)), None)
        if kept is not None:
            signal = turn.inbox[kept]
            turn.inbox[kept] = replace(signal, payload=None, consumed_by=position)
            turn.activities[position] = _ended_by(step, signal, turn.now)
            turn.scheduled.append((position, [], _end_entry(position, signal, kept=True)))
            return graph.WAIT
        turn.activities[position] = replace(step, status=ActivityStatus.WAITING)
        commands: list[Command] = []
        if spec.timeout_s is not None:
            commands.append(StartTimer(TimerKind.WAIT, int(spec.timeout_s * 1000), position, attempt))
        data = {"signal": spec.signal, **({"timeout_s": spec.timeout_s} if spec.timeout_s is not None else {})}
        turn.scheduled.append((position, commands, HistoryEntry(HistoryType.START_WAIT, position, data)))
        return graph.WAIT

    def on_timer(
        self, state: WorkflowState, step: ActivityState, event: TimerFired, history: list[HistoryEntry]
    ) -> Answer:
        """The wait's timeout fired while it still waited: it failed."""
        if event.kind != TimerKind.WAIT or state.status.ended or step.status is not ActivityStatus.WAITING:
            return None
        spec = _wait(step)
        error = f"wait timeout: no signal {spec.signal!r} within {spec.timeout_s} s"
        return Change(replace(step, status=ActivityStatus.FAILED, error=error, finished_at=event.occurred_at))

    def end_of_run(self, step: ActivityState) -> list[Command]:
        if step.status is ActivityStatus.WAITING and _wait(step).timeout_s is not None:
            return [CancelTimer(TimerKind.WAIT, step.position, step.attempt)]
        return []

    def owed(self, state: WorkflowState, step: ActivityState) -> Owed:
        timeout_s = _wait(step).timeout_s
        if step.status is not ActivityStatus.WAITING or timeout_s is None or not step.started_at:
            return [], []
        due = step.started_at + timedelta(seconds=timeout_s)
        return [], [DueTimer(TimerKind.WAIT, step.position, step.attempt, due)]

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = _wait(step)
        return {
            "wait_for": spec.signal,
            "timeout_s": spec.timeout_s,
            "choices": None if spec.choices is None else list(spec.choices),
            "callback_token": tokens.of(state, step) if tokens is not None else None,
        }


def received(
    state: WorkflowState, event: SignalReceived, history: list[HistoryEntry]
) -> tuple[WorkflowState, list[Command], int | None]:
    """A signal for a running workflow: the state with it taken or kept, the commands
    owed, and the position of the step it ended (None when kept or a repeat)."""
    size, digest = payload_digest(event.payload)
    earlier = next((s for s in state.inbox if s.id == event.signal_id), None)
    if earlier is not None:
        reason = f"signal {event.signal_id} already received"
        if earlier.digest is not None and earlier.digest != digest:
            # Two sends of one key with other payloads that both passed the API's check
            # (sent before the first was committed): the first one stands, said so.
            reason += " with another payload: this one dropped"
        history.append(HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
        return state, [], None
    signal = Signal(
        event.signal_id, event.name, event.occurred_at, event.payload, None, event.position, event.run, size, digest
    )
    if signal.position is not None:
        refused = _refused(state, signal)
        if refused:
            history.append(HistoryEntry(HistoryType.DO_NOTHING, signal.position, {"reason": refused}))
            return state, [], None
        step = state.activities[signal.position]
        waiting = step if step.status is ActivityStatus.WAITING else None
    else:
        waiting = waiting_for(state, event.name)
    refused = (
        None if waiting is not None else inbox_full(state.inbox_limit, kept_bytes(state.inbox), size, len(state.inbox))
    )
    if refused is not None:
        history.append(HistoryEntry(HistoryType.DO_NOTHING, data={"reason": f"{refused}: signal dropped"}))
        return state, [], None
    if waiting is None:
        history.append(HistoryEntry(HistoryType.KEEP_SIGNAL, data={"name": event.name, "signal_id": event.signal_id}))
        return replace(state, inbox=(*state.inbox, signal)), [], None
    commands: list[Command] = []
    if _wait(waiting).timeout_s is not None:
        commands.append(CancelTimer(TimerKind.WAIT, waiting.position, waiting.attempt))
    taken = replace(signal, payload=None, consumed_by=waiting.position)
    state = with_activity(replace(state, inbox=(*state.inbox, taken)), _ended_by(waiting, signal, event.occurred_at))
    history.append(_end_entry(waiting.position, signal, kept=False))
    return state, commands, waiting.position


def payload_digest(payload: Any) -> tuple[int, str]:
    """A payload's size (bytes of its JSON, as ``FLOW_MAX_PAYLOAD_BYTES`` counts them) and
    the SHA-256 of its canonical JSON: the same payload, however its keys are ordered,
    has the same digest. O(the payload's size)."""
    size = len(json.dumps(payload))
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return size, hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def kept_bytes(inbox: tuple[Signal, ...] | list[Signal]) -> int:
    """Bytes of the payloads kept in ``inbox`` (signals no step has taken yet)."""
    return sum(s.size for s in inbox if s.consumed_by is None)


def inbox_full(limit: int | None, kept: int, size: int, count: int) -> str | None:
    """Why a signal of ``size`` bytes cannot be kept in an inbox of ``count`` signals
    (taken ones included) whose kept signals hold ``kept`` bytes: it holds
    :data:`MAX_SIGNALS` already, or the bytes would pass ``limit``
    (``FLOW_MAX_INBOX_BYTES``; None: unbounded); None if it can. The one rule of the
    engine and of the API's doors (413). Only keeping is bounded: a signal a step waits
    for is taken, whatever its size."""
    if count >= MAX_SIGNALS:
        return f"the inbox holds {MAX_SIGNALS} signals already (at most {MAX_SIGNALS}, taken ones included)"
    if limit is None or kept + size <= limit:
        return None
    return (
        f"the inbox keeps {kept} bytes of signals no step has taken; {size} more would pass its limit "
        f"of {limit} bytes (FLOW_MAX_INBOX_BYTES)"
    )


def waiting_for(state: WorkflowState, name: str) -> ActivityState | None:
    """The step a signal ``name`` sent by name goes to: the first that waits for it."""
    return next((a for a in state.activities if a.status is ActivityStatus.WAITING and waits_for(a) == name), None)


def _refused(state: WorkflowState, signal: Signal) -> str | None:
    """Why a signal sent with a callback token cannot go to its step, if it cannot."""
    step = state.activity(signal.position) if signal.position is not None else None
    if step is None or waits_for(step) != signal.name or step.position >= state.size:
        return f"callback signal {signal.id}: no wait for {signal.name!r} at position {signal.position}: dropped"
    if signal.run != state.run:
        return f"callback signal {signal.id}: its token is of run {signal.run}, the workflow is on run {state.run}"
    if step.status.ended:
        return f"callback signal {signal.id}: wait {step.id} has ended ({step.status}): dropped"
    return None


def _wait(step: ActivityState) -> Wait:
    assert isinstance(step.spec, Wait)
    return step.spec


def _ended_by(step: ActivityState, signal: Signal, now: datetime) -> ActivityState:
    return replace(step, status=ActivityStatus.SUCCEEDED, output=signal.taken_payload(), error=None, finished_at=now)


def _end_entry(position: int, signal: Signal, *, kept: bool) -> HistoryEntry:
    return HistoryEntry(HistoryType.END_WAIT, position, {"signal": signal.name, "signal_id": signal.id, "kept": kept})


WAIT = WaitKind()

__all__ = [
    "CHOICE_PATTERN",
    "MAX_CHOICES",
    "MAX_SIGNALS",
    "NAME",
    "NAME_PATTERN",
    "WAIT",
    "Wait",
    "WaitKind",
    "inbox_full",
    "is_signal_name",
    "kept_bytes",
    "payload_digest",
    "waiting_for",
    "received",
    "waits_for",
]
