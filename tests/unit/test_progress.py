"""The CLI's progress lines (``flow run``, ``flow start --wait``, ``flow events``), from history entries."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from flow.cli.progress import Narrator

WORKFLOW = {
    "name": "W",
    "activities": [
        {"position": 0, "name": "Optional", "required": False},
        {"position": 1, "name": "Required", "required": True},
    ],
}


def history(*entries: tuple[str, int | None, dict[str, Any]]) -> list[dict[str, Any]]:
    ids = count(1)
    return [
        {"id": next(ids), "type": kind, "position": position, "data": data, "occurred_at": "2026-01-01T12:00:01.000Z"}
        for kind, position, data in entries
    ]


def narrate(events: list[dict[str, Any]]) -> list[str]:
    """The lines of ``events``, each without its time and with its spacing folded."""
    narrator = Narrator()
    lines = []
    for event in events:
        lines += [" ".join(line.plain.split()[1:]) for line in narrator.lines(event, WORKFLOW)]
    return lines


def failed(position: int, attempt: int, outcome: str = "TEMPORARY_FAILURE", **data: Any):
    return ("activity-result", position, {"attempt": attempt, "outcome": outcome, **data})


def test_a_do_nothing_without_a_reason_has_no_line():
    events = history(
        ("start-workflow", None, {}),
        ("schedule-activity", 1, {"attempt": 1}),
        ("activity-started", 1, {"attempt": 1}),
        ("do-nothing", None, {}),
        ("activity-result", 1, {"attempt": 1, "outcome": "SUCCEEDED"}),
        ("workflow-finished", None, {}),
    )
    assert narrate(events) == [
        "W workflow started",
        "Required attempt 1 scheduled",
        "Required attempt 1 started",
        "Required attempt 1 succeeded",
        "W workflow finished",
    ]


def test_a_do_nothing_with_a_reason_says_it():
    events = history(
        ("activity-result", 1, {"attempt": 1, "outcome": "SUCCEEDED"}),
        ("do-nothing", 1, {"reason": "workflow Failed"}),
    )
    assert narrate(events)[-1] == "Required nothing to do: workflow Failed"


def test_the_last_failed_attempt_of_an_optional_activity_ends_with_a_permanent_failure_line():
    events = history(
        failed(0, 1, error="Traceback (most recent call last):\n  File 'x'\nRuntimeError: broken"),
        ("reschedule-activity", 0, {"attempt": 2, "delay_ms": 10}),
        ("timer-fired", 0, {"kind": "retry", "attempt": 2}),
        ("schedule-activity", 0, {"attempt": 2}),
        failed(0, 2, error="RuntimeError: broken"),
        ("schedule-activity", 1, {"attempt": 1}),
    )
    assert narrate(events) == [
        "Optional attempt 1 temporary failure: RuntimeError: broken",
        "Optional attempt 2 will retry in 0.0 s",
        "Optional attempt 2 scheduled",
        "Optional attempt 2 temporary failure: RuntimeError: broken",
        "Optional attempt 2 failed permanently (optional)",
        "Required attempt 1 scheduled",
    ]


@pytest.mark.parametrize(
    ("fact", "decision", "expected"),
    [
        (
            failed(1, 1, "PERMANENT_FAILURE", error="no"),
            ("workflow-failure", None, {"error": "required activity Required (position 1) failed permanently: no"}),
            [
                "Required attempt 1 permanent failure: no",
                "Required attempt 1 failed permanently",
                "W workflow failed: required activity Required",
            ],
        ),
        (
            ("timer-fired", 0, {"kind": "start-to-close", "attempt": 3}),
            ("workflow-finished", None, {}),
            [
                "Optional attempt 3 start-to-close timer fired",
                "Optional attempt 3 failed permanently (optional)",
                "W workflow finished",
            ],
        ),
        (  # a late result after the workflow ended: the decision says why it changes nothing
            failed(0, 1),
            ("do-nothing", 0, {"reason": "workflow Cancelled"}),
            ["Optional attempt 1 temporary failure", "Optional nothing to do: workflow Cancelled"],
        ),
        (  # a stale result is no failure of the activity
            failed(0, 1, stale=True),
            ("do-nothing", None, {}),
            ["Optional attempt 1 temporary failure (stale, ignored)"],
        ),
    ],
)
def test_a_permanent_failure_line_follows_only_a_failure_that_was_not_retried(fact, decision, expected):
    lines = narrate(history(fact, decision))
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_the_decision_after_a_failure_may_come_in_a_later_page():
    events = history(failed(0, 3), ("schedule-activity", 1, {"attempt": 1}))
    narrator = Narrator()
    first = narrator.lines(events[0], WORKFLOW)
    second = narrator.lines(events[1], WORKFLOW)
    assert [line.plain.split()[-1] for line in first] == ["failure"]
    assert ["(optional)" in line.plain for line in second] == [True, False]


def test_a_running_activitys_heartbeats_are_shown_from_the_view_once_each():
    def view(at: str | None, status: str = "Started", details: Any = None) -> dict[str, Any]:
        beat = None if at is None else {"details": details, "at": at}
        running = {"position": 1, "name": "Required", "status": status, "attempt": 2, "heartbeat": beat}
        return {**WORKFLOW, "activities": [{**WORKFLOW["activities"][0], "status": "Pending"}, running]}

    narrator = Narrator()
    seen = []
    for workflow in (
        view(None),
        view("2026-01-01T12:00:02.000Z", details={"done": 3}),
        view("2026-01-01T12:00:02.000Z", details={"done": 3}),  # the same one, polled again
        view("2026-01-01T12:00:03.000Z"),
        view("2026-01-01T12:00:04.000Z", status="Succeeded", details={"done": 9}),  # its result says the rest
    ):
        seen += [" ".join(line.plain.split()[1:]) for line in narrator.heartbeats(workflow)]
    assert seen == ['Required attempt 2 heartbeat: {"done": 3}', "Required attempt 2 heartbeat"]


def test_heartbeats_show_their_progress_and_a_stopped_attempt_says_why():
    events = history(
        ("activity-heartbeat", 1, {"attempt": 1, "details": {"done": 3}}),
        ("do-nothing", None, {}),
        ("activity-heartbeat", 1, {"attempt": 1}),
        ("do-nothing", None, {}),
        ("timer-fired", 1, {"kind": "heartbeat", "attempt": 1}),
        ("do-nothing", 1, {"reason": "a heartbeat came in time: the timer is set again"}),
        ("cancel-requested", None, {}),
        ("workflow-cancelled", None, {}),
        ("activity-heartbeat", 1, {"attempt": 1, "stale": True}),
        ("cancel-attempt", 1, {"attempt": 1, "reason": "workflow Cancelled"}),
        ("activity-result", 1, {"attempt": 1, "outcome": "CANCELLED", "error": "cancelled"}),
        ("do-nothing", 1, {"reason": "workflow Cancelled"}),
    )
    assert narrate(events) == [
        'Required attempt 1 heartbeat: {"done": 3}',
        "Required attempt 1 heartbeat",
        "Required attempt 1 heartbeat timer fired",
        "Required nothing to do: a heartbeat came in time: the timer is set again",
        "W workflow cancelled",
        "Required attempt 1 heartbeat (stale, ignored)",
        "Required attempt 1 told to stop (workflow Cancelled)",
        "Required attempt 1 cancelled: cancelled",
        "Required nothing to do: workflow Cancelled",
    ]


def test_a_heartbeat_timeout_that_is_not_retried_ends_with_a_permanent_failure_line():
    events = history(
        ("timer-fired", 1, {"kind": "heartbeat", "attempt": 2}),
        ("workflow-failure", None, {"error": "required activity failed"}),
    )
    assert "failed permanently" in " ".join(narrate(events))


def test_a_child_scheduled_before_the_workflow_shows_it_is_named_all_the_same():
    # `flow run` fetched the workflow a moment before the history that schedules its child.
    from flow.cli.progress import describe_event
    from flow.core.lineage import child_id

    workflow = {
        "id": "wf-1",
        "name": "W",
        "activities": [
            {"position": 0, "id": "ship", "name": "C", "kind": "child", "workflow": {"name": "C"}, "child_id": None}
        ],
    }
    [event] = history(("schedule-activity", 0, {"attempt": 1}))
    assert f"scheduled: child workflow {child_id('wf-1', 'ship')}" in describe_event(event, workflow).plain
