"""Human-readable progress: one line per history entry, one table per workflow."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from flow.state import ActivityStatus, WorkflowState, WorkflowStatus

STATUS_STYLES = {
    WorkflowStatus.IN_PROGRESS: "yellow",
    WorkflowStatus.FINISHED: "green",
    WorkflowStatus.FAILED: "red",
    WorkflowStatus.CANCELLED: "magenta",
    ActivityStatus.PENDING: "dim",
    ActivityStatus.SCHEDULED: "cyan",
    ActivityStatus.STARTED: "yellow",
    ActivityStatus.WAITING_RETRY: "yellow",
    ActivityStatus.SUCCEEDED: "green",
    ActivityStatus.FAILED: "red",
    ActivityStatus.SKIPPED: "dim",
    ActivityStatus.CANCELLED: "magenta",
}


def describe_event(event: dict[str, Any], state: WorkflowState) -> Text:
    """``12:00:01  DoSomethingActivity  attempt 1  started``."""
    data = event.get("data") or {}
    kind = event["type"]
    position = event.get("position")
    who = state.activities[position].name if position is not None and position < len(state.activities) else state.name
    attempt = f"attempt {data['attempt']}" if "attempt" in data else ""
    what = {
        "start-workflow": "workflow started",
        "schedule-activity": "scheduled",
        "activity-started": "started",
        "reschedule-activity": f"will retry in {data.get('delay_ms', 0) / 1000:.1f} s",
        "timer-fired": f"{data.get('kind', '')} timer fired",
        "cancel-requested": "cancel requested",
        "workflow-cancelled": "workflow cancelled",
        "retry-requested": "retry requested",
        "retry-workflow": f"workflow retried from where it stopped (run {data.get('run')})",
        "workflow-finished": "workflow finished",
        "workflow-failure": f"workflow failed: {data.get('error', '')}",
    }.get(kind, kind)
    style = ""
    if kind == "activity-result":
        outcome = data.get("outcome", "")
        what = outcome.lower().replace("_", " ")
        style = "green" if outcome == "SUCCEEDED" else "red"
        if data.get("error"):
            what += f": {data['error'].strip().splitlines()[-1]}"
    elif kind == "workflow-finished":
        style = "bold green"
    elif kind == "workflow-failure":
        style = "bold red"
    if data.get("stale"):
        what += " (stale, ignored)"
    if kind in ("do-nothing", "cancel-requested", "retry-requested") or (
        kind == "timer-fired" and data.get("kind") == "retry" and not data.get("stale")
    ):
        return Text("")
    at = event["occurred_at"].strftime("%H:%M:%S.%f")[:-3]
    line = Text(f"{at}  ")
    line.append(f"{who:<28}", style="bold")
    line.append(f"{attempt:<11}")
    line.append(what, style=style)
    return line


def activity_table(state: WorkflowState) -> Table:
    """One row per activity: status, attempts, duration, last error."""
    table = Table(title=f"{state.name} {state.id}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("activity")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("error", overflow="fold", max_width=60)
    for a in state.activities:
        duration = ""
        if a.started_at and a.finished_at:
            duration = f"{(a.finished_at - a.started_at).total_seconds():.3f} s"
        error = a.error.strip().splitlines()[-1] if a.error else ""
        table.add_row(
            str(a.position),
            a.name + ("" if a.required else " (optional)"),
            Text(a.status.value, style=STATUS_STYLES.get(a.status, "")),
            f"{a.attempt}/{a.retry.max_attempts}",
            duration,
            error,
        )
    return table


def status_text(status: WorkflowStatus) -> Text:
    return Text(status.value, style="bold " + STATUS_STYLES.get(status, ""))
