"""Human-readable progress for the CLI: one line per history entry, one table per workflow.

Both work on the JSON views of :mod:`api.views` (what the API returns), so the
embedded ``flow run`` and the remote ``flow start --wait`` print the same thing.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from flow.core import kinds
from flow.core.failure import cause
from flow.core.vocabulary import DECISIONS, ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus

WORKFLOW_STYLES: dict[str, str] = {
    WorkflowStatus.IN_PROGRESS: "yellow",
    WorkflowStatus.COMPENSATING: "yellow",
    WorkflowStatus.FINISHED: "green",
    WorkflowStatus.FAILED: "red",
    WorkflowStatus.CANCELLED: "magenta",
}
ACTIVITY_STYLES: dict[str, str] = {
    ActivityStatus.PENDING: "dim",
    ActivityStatus.QUEUED: "blue",
    ActivityStatus.SCHEDULED: "cyan",
    ActivityStatus.STARTED: "yellow",
    ActivityStatus.WAITING_RETRY: "yellow",
    ActivityStatus.RUNNING: "cyan",
    ActivityStatus.WAITING: "blue",
    ActivityStatus.SUCCEEDED: "green",
    ActivityStatus.FAILED: "red",
    ActivityStatus.SKIPPED: "dim",
    ActivityStatus.CANCELLED: "magenta",
}

#: History entries not worth a line of their own (the next line says it better).
_QUIET = frozenset({HistoryType.CANCEL_REQUESTED, HistoryType.RETRY_REQUESTED})
#: A map with more items than this shows only its items' failures, line by line and in
#: the table (its own lines say how many started and ended).
MAX_ITEMS_SHOWN = 10
#: What an item of a large map says only when it failed.
_ROUTINE = frozenset({HistoryType.SCHEDULE_ACTIVITY, HistoryType.ACTIVITY_STARTED, HistoryType.ACTIVITY_RESULT})
#: Timers whose firing ends the attempt they guard.
_TIMEOUTS = frozenset({TimerKind.SCHEDULE_TO_START, TimerKind.START_TO_CLOSE, TimerKind.HEARTBEAT})
#: An activity whose heartbeats are news (one that ended says how in its own line).
_RUNNING = frozenset({ActivityStatus.SCHEDULED, ActivityStatus.STARTED})


def is_quiet(event: dict[str, Any]) -> bool:
    """No line of its own: a ``do-nothing`` without a reason (what most events decide: an
    attempt started, an independent activity ended), the requests whose decision follows,
    a retry timer (the ``scheduled`` line follows)."""
    data = event.get("data") or {}
    kind = event["type"]
    return (
        kind in _QUIET
        or (kind == HistoryType.DO_NOTHING and not data.get("reason"))
        or (kind == HistoryType.TIMER_FIRED and data.get("kind") == TimerKind.RETRY and not data.get("stale"))
    )


class Narrator:
    """The lines of a workflow's history, fed in order (in pages, as they are committed).

    Whether a failed attempt was the activity's last is said by the decision recorded
    after it: every event's fact is followed by its decisions, committed together. When
    that decision is not to retry it, the activity failed permanently, and says so in a
    line of its own (an optional activity's failure otherwise ends on "temporary failure").
    """

    def __init__(self) -> None:
        self._failed: dict[str, Any] | None = None  # a failed attempt awaiting its decision
        self._beats: dict[int, str] = {}  # position -> the time of the last heartbeat shown

    def heartbeats(self, workflow: dict[str, Any]) -> list[Text]:
        """A line for each running activity's heartbeat not shown yet. Heartbeats are not in
        the history (the activity keeps its last one), so they are read from the view: a
        poll shows the latest, not every one."""
        lines = []
        for activity in workflow.get("activities") or []:
            beat = activity.get("heartbeat") or {}
            at = beat.get("at")
            if not at or self._beats.get(activity["position"]) == at or activity["status"] not in _RUNNING:
                continue
            self._beats[activity["position"]] = at
            what = "heartbeat" + ("" if beat.get("details") is None else f": {json.dumps(beat['details'])[:120]}")
            event = {"occurred_at": at, "position": activity["position"], "data": {"attempt": activity["attempt"]}}
            lines.append(_line(event, workflow, what, "dim"))
        return lines

    def lines(self, event: dict[str, Any], workflow: dict[str, Any]) -> list[Text]:
        """The lines ``event`` adds (none for a quiet one)."""
        lines = []
        kind, data = event["type"], event.get("data") or {}
        if self._failed is not None and kind in DECISIONS:
            failed, self._failed = self._failed, None
            retried = kind == HistoryType.RESCHEDULE_ACTIVITY and event.get("position") == failed["position"]
            ignored = kind == HistoryType.DO_NOTHING and data.get("reason")  # the workflow had ended
            if not (retried or ignored):
                lines.append(_failed_permanently(failed, event, workflow))
        if _routine_item(event, workflow):
            return lines
        line = describe_event(event, workflow)
        if line.plain:
            lines.append(line)
        if not data.get("stale") and (
            (kind == HistoryType.ACTIVITY_RESULT and data.get("outcome") != Outcome.SUCCEEDED)
            or (kind == HistoryType.TIMER_FIRED and data.get("kind") in _TIMEOUTS)
        ):
            self._failed = event
        return lines


def _routine_item(event: dict[str, Any], workflow: dict[str, Any]) -> bool:
    """An item of a large map scheduled, started or succeeded: not worth a line."""
    data = event.get("data") or {}
    if event["type"] not in _ROUTINE or data.get("outcome", Outcome.SUCCEEDED) != Outcome.SUCCEEDED:
        return False
    activity = _activity(workflow, event.get("position"))
    return activity is not None and _in_large_map(activity, workflow)


def _in_large_map(activity: dict[str, Any], workflow: dict[str, Any]) -> bool:
    if activity.get("parent") is None:
        return False
    parent = next((a for a in workflow["activities"] if a.get("id") == activity["parent"]), None)
    return parent is not None and sum((parent.get("items") or {}).values()) > MAX_ITEMS_SHOWN


def _activity(workflow: dict[str, Any], position: int | None) -> dict[str, Any] | None:
    activities = workflow.get("activities") or []
    return activities[position] if position is not None and 0 <= position < len(activities) else None


def _failed_permanently(failed: dict[str, Any], decision: dict[str, Any], workflow: dict[str, Any]) -> Text:
    activity = _activity(workflow, failed["position"])
    optional = activity is not None and _optional(activity)
    what = "failed permanently" + (" (optional)" if optional else "")
    return _line({**failed, "occurred_at": decision["occurred_at"]}, workflow, what, "red")


def describe_event(event: dict[str, Any], workflow: dict[str, Any]) -> Text:
    """``12:00:01.123  DoSomethingActivity  attempt 1  started``; empty for quiet entries.

    A type this CLI does not know (from a newer server) is shown as it is named.
    """
    if is_quiet(event):
        return Text("")
    data = event.get("data") or {}
    kind = event["type"]
    # What the step's kind says of its own entries (flow.core.kinds), else the general line.
    own = kinds.line(kind, data, _activity(workflow, event.get("position")), workflow)
    what = own or {
        HistoryType.START_WORKFLOW: "workflow started",
        HistoryType.TIMER_FIRED: kinds.timer_line(data.get("kind")) or f"{data.get('kind', '')} timer fired",
        HistoryType.WORKFLOW_FINISHED: "workflow finished",
        HistoryType.WORKFLOW_FAILURE: f"workflow failed: {data.get('error', '')}",
        HistoryType.WORKFLOW_CANCELLED: "workflow cancelled" + (f": {data['reason']}" if data.get("reason") else ""),
        HistoryType.RETRY_WORKFLOW: f"workflow retried from where it stopped (run {data.get('run')})",
        HistoryType.RERUN_REQUESTED: f"rerun from {data.get('from')} asked"
        + (f" by {data['by']}" if data.get("by") else ""),
        HistoryType.RERUN_WORKFLOW: f"workflow rerun from {data.get('from')} (run {data.get('run')}"
        + (f", version {data['version']}" if data.get("version") else "")
        + f"): {', '.join(data.get('reset') or [])} run again",
        HistoryType.SKIP_ACTIVITY: f"skipped: {data.get('reason', '')}",
        HistoryType.FAIL_ACTIVITY: f"failed before it ran: {data.get('error', '')}",
        HistoryType.PAUSE_WORKFLOW: "workflow paused: nothing new is scheduled",
        HistoryType.RESUME_WORKFLOW: "workflow resumed",
        HistoryType.QUEUE_WORKFLOW: f"workflow queued for {data.get('limit')}"
        + (f" [{data['key']}]" if data.get("key") else ""),
        HistoryType.ADMIT_WORKFLOW: "workflow let in by its concurrency limit",
    }.get(kind, kind)
    style = ""
    if kind == HistoryType.ACTIVITY_RESULT:
        outcome = data.get("outcome", "")
        what = outcome.lower().replace("_", " ")
        style = "green" if outcome == Outcome.SUCCEEDED else "red"
        if data.get("error"):
            what += f": {cause(data['error'])}"
    elif kind == HistoryType.WORKFLOW_FINISHED:
        style = "bold green"
    elif kind in (HistoryType.SKIP_ACTIVITY, HistoryType.ACTIVITY_HEARTBEAT):
        style = "dim"
    elif kind == HistoryType.CANCEL_ATTEMPT:
        style = "magenta"
    elif kind == HistoryType.FAIL_ACTIVITY or (kind == HistoryType.END_MAP and data.get("item") is not None):
        style = "red"
    elif kind in (HistoryType.WORKFLOW_FAILURE, HistoryType.WORKFLOW_CANCELLED):
        style = "bold red"
    elif kind == HistoryType.DO_NOTHING:
        what, style = f"nothing to do: {data['reason']}" if data.get("reason") else "nothing to do", "dim"
    if data.get("stale"):
        what += " (stale, ignored)"
    return _line(event, workflow, what, style)


def _line(event: dict[str, Any], workflow: dict[str, Any], what: str, style: str) -> Text:
    data = event.get("data") or {}
    position = event.get("position")
    activities = workflow.get("activities") or []
    who = _label(activities[position]) if position is not None and position < len(activities) else workflow["name"]
    attempt = f"attempt {data['attempt']}" if data.get("attempt") is not None and position is not None else ""
    line = Text(f"{str(event['occurred_at'])[11:23]}  ")
    line.append(f"{who:<28}", style="bold")
    line.append(f"{attempt:<11}")
    line.append(what, style=style)
    return line


def activity_table(workflow: dict[str, Any]) -> Table:
    """One row per activity: status, attempts, duration, last error; the title names the
    workflow and its priority (in the title, not the status line: scripts read the last
    line as the outcome)."""
    title = f"{workflow['name']} {workflow['id']}"
    if workflow.get("priority") is not None:  # an older API's view has none
        title += f"  priority {workflow['priority']}"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("activity")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("error", overflow="fold", max_width=60)
    for a in _map_items_after_their_map(workflow["activities"]):
        if _in_large_map(a, workflow) and a["status"] == ActivityStatus.SUCCEEDED:
            continue
        duration = "" if a["duration_ms"] is None else f"{a['duration_ms'] / 1000:.3f} s"
        table.add_row(
            str(a["position"]),
            _label(a) + (" (optional)" if _optional(a) else ""),
            Text(a["status"], style=ACTIVITY_STYLES.get(a["status"], "")),
            f"{a['attempt']}/{a['max_attempts']}" if _kind(a).has_attempts else "",
            duration,
            cause(a["error"]) if a["error"] else (a.get("skip_reason") or _kind(a).note(a)),
        )
    return table


def _map_items_after_their_map(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items: dict[str | None, list[dict[str, Any]]] = {}
    for a in activities:
        if a.get("parent") is not None:
            items.setdefault(a["parent"], []).append(a)
    ordered = []
    for a in activities:
        if a.get("parent") is None:
            ordered.append(a)
            ordered.extend(items.get(a.get("id"), ()))
    return ordered


def _optional(activity: dict[str, Any]) -> bool:
    """Not required (an item of a map is not, but its failure fails its map; an undo or a
    failure handler is not, but its failure is the ending's business)."""
    return not activity["required"] and activity.get("parent") is None and not _kind(activity).ending


def _kind(activity: dict[str, Any]) -> kinds.StepKind:
    """The step's kind, as its view says (a server from before kinds: an activity)."""
    return kinds.named(activity.get("kind")) or kinds.KINDS["activity"]


def _label(activity: dict[str, Any]) -> str:
    """A step's id, with its class (or what it runs) when the id does not say it."""
    return _kind(activity).label(activity)


def status_line(workflow: dict[str, Any]) -> Text:
    line = Text(workflow["status"], style="bold " + WORKFLOW_STYLES.get(workflow["status"], ""))
    if workflow.get("error"):
        line.append(f"  {workflow['error']}")
    if workflow.get("compensation"):
        line.append(f"  (compensation {workflow['compensation']})")
    return line
