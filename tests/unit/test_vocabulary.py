"""The vocabularies: their stored values never change, and every list is derived from them."""

from __future__ import annotations

import json

import pytest

from flow.cli.progress import ACTIVITY_STYLES, WORKFLOW_STYLES, describe_event
from flow.core.vocabulary import (
    DECISIONS,
    ENDINGS,
    FACTS,
    ActivityStatus,
    HistoryType,
    Outcome,
    TimerKind,
    Trigger,
    WorkflowStatus,
)

# What databases and queued messages hold today: changing a value strands every row
# and message that holds it. Add members freely; never change or remove one of these.
STORED = {
    WorkflowStatus: ["In Progress", "Finished", "Failed", "Cancelled"],
    ActivityStatus: [
        "Pending",
        "Scheduled",
        "Started",
        "Waiting Retry",
        "Succeeded",
        "Failed",
        "Skipped",
        "Cancelled",
        "Running",
        "Waiting",
    ],
    Outcome: ["SUCCEEDED", "TEMPORARY_FAILURE", "PERMANENT_FAILURE", "CANCELLED"],
    TimerKind: ["retry", "schedule-to-start", "start-to-close", "workflow", "sleep", "wait", "heartbeat"],
    Trigger: ["all_succeeded", "all_done", "one_succeeded"],
    HistoryType: [
        "start-workflow",
        "schedule-activity",
        "reschedule-activity",
        "skip-activity",
        "fail-activity",
        "retry-workflow",
        "do-nothing",
        "workflow-finished",
        "workflow-failure",
        "workflow-cancelled",
        "activity-started",
        "activity-result",
        "timer-fired",
        "cancel-requested",
        "retry-requested",
        "start-map",
        "end-map",
        "start-sleep",
        "start-wait",
        "end-wait",
        "keep-signal",
        "signal-received",
        "pause-workflow",
        "resume-workflow",
        "pause-requested",
        "resume-requested",
        "cancel-attempt",
        "activity-heartbeat",
    ],
}


@pytest.mark.parametrize("vocabulary", list(STORED), ids=lambda v: v.__name__)
def test_values_once_stored_are_never_changed_or_removed(vocabulary):
    assert set(STORED[vocabulary]) <= {member.value for member in vocabulary}


@pytest.mark.parametrize("vocabulary", list(STORED), ids=lambda v: v.__name__)
def test_a_value_read_back_as_a_string_is_its_member(vocabulary):
    for member in vocabulary:
        text = json.loads(json.dumps(member))
        assert type(text) is str and text == member and vocabulary(text) is member
        assert {text: 1}[member] == 1  # same hash: a dict keyed by members takes strings


def test_history_types_are_facts_or_decisions_and_the_endings_are_decisions():
    assert FACTS | DECISIONS == set(HistoryType) and not FACTS & DECISIONS
    assert ENDINGS == {HistoryType.WORKFLOW_FINISHED, HistoryType.WORKFLOW_FAILURE, HistoryType.WORKFLOW_CANCELLED}
    assert ENDINGS <= DECISIONS
    assert FACTS == {
        HistoryType.ACTIVITY_STARTED,
        HistoryType.ACTIVITY_RESULT,
        HistoryType.TIMER_FIRED,
        HistoryType.CANCEL_REQUESTED,
        HistoryType.RETRY_REQUESTED,
        HistoryType.RERUN_REQUESTED,
        HistoryType.SIGNAL_RECEIVED,
        HistoryType.PAUSE_REQUESTED,
        HistoryType.RESUME_REQUESTED,
        HistoryType.ACTIVITY_HEARTBEAT,
    }


def test_statuses_ended_and_in_flight():
    assert [s for s in WorkflowStatus if not s.ended] == [WorkflowStatus.IN_PROGRESS, WorkflowStatus.COMPENSATING]
    assert [s for s in WorkflowStatus if s.open] == [WorkflowStatus.IN_PROGRESS]
    assert {s for s in ActivityStatus if s.in_flight} == {ActivityStatus.SCHEDULED, ActivityStatus.STARTED}
    assert {s for s in ActivityStatus if not s.ended and not s.in_flight} == {
        ActivityStatus.PENDING,
        ActivityStatus.QUEUED,
        ActivityStatus.WAITING_RETRY,
        ActivityStatus.RUNNING,
        ActivityStatus.WAITING,
    }


def test_the_cli_has_a_style_for_every_status():
    assert set(WORKFLOW_STYLES) == set(WorkflowStatus)
    assert set(ACTIVITY_STYLES) == set(ActivityStatus)


WORKFLOW = {"name": "W", "activities": [{"name": "A"}]}


def event(history_type: str, **data) -> dict:
    return {
        "type": history_type,
        "position": 0,
        "data": {"attempt": 1, **data},
        "occurred_at": "2026-01-01T12:00:01.123Z",
    }


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (event(HistoryType.SCHEDULE_ACTIVITY), "scheduled"),
        (event("activity-result", outcome="TEMPORARY_FAILURE", error="Traceback\nValueError: x"), "ValueError: x"),
        (event("timer-fired", kind="start-to-close"), "start-to-close timer fired"),
        (event("timer-fired", kind="retry"), ""),  # the next line (scheduled) says it
        (event("do-nothing"), ""),
        (event("some-future-type"), "some-future-type"),  # from a newer server: shown by name
    ],
)
def test_progress_lines_are_keyed_by_history_type(entry, line):
    text = describe_event(entry, WORKFLOW).plain
    assert (text == "") if line == "" else (line in text)
