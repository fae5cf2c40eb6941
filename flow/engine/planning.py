"""What a transition owes, from its decisions: the messages to send and the timers to set
or delete. Pure: the engine calls it with the clock's reading and its settings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flow.core.commands import CancelTimer, Command, RunActivity, StartTimer
from flow.core.state import WorkflowState
from flow.messages import AttemptRequest, Outgoing, Outputs
from flow.persistence.records import TimerRow, timer_id


@dataclass
class Plan:
    owed: list[Outgoing] = field(default_factory=list)
    timers_set: list[TimerRow] = field(default_factory=list)
    timers_deleted: list[str] = field(default_factory=list)


def plan(
    after: WorkflowState,
    commands: Iterable[tuple[Command, datetime]],
    *,
    partition: int,
    reply_to: str,
    activity_queue: str,
    send_after: datetime,
    consumed_timers: Iterable[str] = (),
) -> Plan:
    """The messages and timers of ``commands`` (each with the time of the event that
    caused it), for a workflow now in state ``after``.

    A timer set and then cancelled within the same transition is only deleted;
    ``consumed_timers`` (timers that fired and are handled here) are deleted too.
    """
    timers: dict[str, TimerRow | None] = dict.fromkeys(consumed_timers)
    owed: list[Outgoing] = []
    outputs: Outputs | None = None
    for command, occurred_at in commands:
        if isinstance(command, RunActivity):
            outputs = outputs or Outputs(after)
            request = AttemptRequest.of(after, command.position, command.attempt, reply_to=reply_to, outputs=outputs)
            owed.append(Outgoing.of(request, activity_queue, partition=partition, send_after=send_after))
        elif isinstance(command, StartTimer):
            tid = timer_id(after.id, command.kind, command.position, command.attempt)
            due = occurred_at + timedelta(milliseconds=command.delay_ms)
            timers[tid] = TimerRow(tid, after.id, partition, command.kind, command.position, command.attempt, due)
        elif isinstance(command, CancelTimer):
            timers[timer_id(after.id, command.kind, command.position, command.attempt)] = None
        else:  # pragma: no cover - a new command without a plan is a bug
            raise TypeError(f"nothing planned for {command!r}")
    return Plan(
        owed,
        [row for row in timers.values() if row is not None],
        [tid for tid, row in timers.items() if row is None],
    )
