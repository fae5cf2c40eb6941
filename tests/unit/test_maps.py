"""``map``: an activity run once per item, decided by the pure ``decide()``, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from flow.core.commands import CancelTimer, RunActivity, StartTimer
from flow.core.events import ActivityCompleted, CancelRequested, RetryRequested, TimerFired
from flow.core.kinds import map as maps
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from tests.unit.test_graph import Run, problems, state_of

S = ActivityStatus


def mapped(over: str = "input.items", max_concurrency: int | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"over": over}
    if max_concurrency is not None:
        spec["max_concurrency"] = max_concurrency
    return {"name": "A", "id": "each", "map": spec, **extra}


def run_of(*activities: dict[str, Any], items: list[Any] | None = None) -> Run:
    return Run(state_of(*activities, input_data={"items": items if items is not None else []}))


def item_ids(run: Run) -> list[str]:
    return [a.id for a in run.state.activities if a.parent is not None]


def in_flight(run: Run) -> list[str]:
    return [a.id for a in run.state.activities if a.parent is not None and a.status.in_flight]


def history_types(run: Run) -> list[HistoryType]:
    return [h.type for h in run.decision.history]


# -- validation ---------------------------------------------------------------------


def test_map_over_must_compile_and_is_named_by_its_path():
    found = problems(mapped(over="items[?"))
    assert [path for path, _ in found] == ["$.activities[0].map.over"]
    assert "not a JMESPath expression" in found[0][1]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"max_concurrency": 2}, "$.activities[0].map"),
        ({"over": "x", "max_concurrency": 0}, "$.activities[0].map.max_concurrency"),
        ({"over": "x", "max_concurrency": maps.MAX_ITEMS + 1}, "$.activities[0].map.max_concurrency"),
        ({"over": "x", "each": 1}, "$.activities[0].map"),
        ({"over": ""}, "$.activities[0].map.over"),
    ],
)
def test_map_shape_is_checked(spec, path):
    found = problems({"name": "A", "map": spec})
    assert [p for p, _ in found] == [path], found


# -- sizes ----------------------------------------------------------------------------


def test_an_empty_list_succeeds_at_once_with_an_empty_output_and_the_next_activity_runs():
    run = run_of(mapped(), {"name": "B"}, items=[])
    assert run.status("each") is S.SUCCEEDED and run.activity("each").output == []
    assert run.scheduled() == ["B"] and item_ids(run) == []
    assert HistoryType.START_MAP in history_types(run) and HistoryType.END_MAP in history_types(run)
    run.end("B")
    assert run.state.status is WorkflowStatus.FINISHED and run.state.output == {"each": []}


def test_one_item_runs_with_its_item_and_index_and_the_output_is_a_list():
    run = run_of(mapped(), {"name": "B"}, items=[{"n": 7}])
    assert run.scheduled() == ["each[0]"]
    item = run.activity("each[0]")
    assert (item.spec.item, item.spec.index, item.parent, item.required) == ({"n": 7}, 0, 0, False)
    assert run.status("each") is S.RUNNING and not S.RUNNING.in_flight
    run.end("each[0]", output={"double": 14})
    assert run.activity("each").output == [{"double": 14}] and run.scheduled() == ["B"]
    run.end("B")
    # Items are not outputs of their own: the map's list is.
    assert run.state.output == {"each": [{"double": 14}]}


def test_a_thousand_items_at_most_max_concurrency_in_flight_outputs_in_order():
    run = run_of(mapped(max_concurrency=10), {"name": "B"}, items=list(range(1000)))
    assert len(item_ids(run)) == 1000 and run.scheduled() == [f"each[{i}]" for i in range(10)]
    finished = 0
    # End them out of order: the newest in flight first.
    while run.status("each") is S.RUNNING:
        flying = in_flight(run)
        assert 1 <= len(flying) <= 10
        index = int(flying[-1].split("[")[1].rstrip("]"))
        run.end(flying[-1], output=index * 2)
        finished += 1
    assert finished == 1000
    assert run.activity("each").output == [i * 2 for i in range(1000)]
    assert run.scheduled() == ["B"]


def test_without_max_concurrency_every_item_is_scheduled_at_once():
    run = run_of(mapped(), items=["a", "b", "c"])
    assert run.scheduled() == ["each[0]", "each[1]", "each[2]"]


def test_the_list_can_come_from_an_earlier_output():
    run = run_of({"name": "B"}, mapped(over="outputs.B.files"))
    run.end("B", output={"files": ["x", "y"]})
    assert run.scheduled() == ["each[0]", "each[1]"]
    assert [run.activity(i).spec.item for i in ("each[0]", "each[1]")] == ["x", "y"]


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ({"not": "a list"}, 'gave {"not": "a list"}, not a list'),
        (list(range(maps.MAX_ITEMS + 1)), f"gave {maps.MAX_ITEMS + 1} items; a map may have at most"),
    ],
)
def test_a_map_over_something_else_fails_before_any_item_runs(items, reason):
    run = Run(state_of(mapped(), {"name": "B"}, input_data={"items": items}))
    assert run.status("each") is S.FAILED and reason in run.activity("each").error
    assert item_ids(run) == [] and run.scheduled() == []
    assert run.state.status is WorkflowStatus.FAILED


# -- failures and retries -------------------------------------------------------------


def test_an_item_retries_within_its_own_budget():
    entry = mapped(config={"retry": {"max_attempts": 2, "initial_delay_ms": 10}})
    run = run_of(entry, items=[1, 2])
    run.end("each[0]", Outcome.TEMPORARY_FAILURE)
    assert run.status("each[0]") is S.WAITING_RETRY
    timer = next(c for c in run.decision.commands if isinstance(c, StartTimer))
    run.decision = run._decide(TimerFired(TimerKind.RETRY, timer.position, timer.attempt, occurred_at=run._now()))
    assert run.scheduled() == ["each[0]"] and run.activity("each[0]").attempt == 2
    run.end("each[1]", output=2)
    run.end("each[0]", output=1)
    assert run.activity("each").output == [1, 2] and run.state.status is WorkflowStatus.FINISHED


def test_one_item_failing_fails_the_map_skips_the_rest_and_records_late_results():
    run = run_of(mapped(max_concurrency=2), {"name": "B"}, items=[1, 2, 3, 4])
    run.end("each[0]", Outcome.PERMANENT_FAILURE)
    each = run.activity("each")
    assert each.status is S.FAILED and each.error.startswith("item 0 failed")
    assert [run.status(f"each[{i}]") for i in range(4)] == [S.FAILED, S.SCHEDULED, S.SKIPPED, S.SKIPPED]
    assert run.state.status is WorkflowStatus.FAILED and "required activity each" in run.state.error
    # The item still in flight reports later: recorded, nothing decided.
    run.end("each[1]", output=2)
    assert run.status("each[1]") is S.SUCCEEDED and run.decision.commands == ()


def test_an_optional_map_failing_lets_the_workflow_go_on_and_cancels_waiting_retries():
    entry = mapped(required=False, config={"retry": {"max_attempts": 3}})
    run = run_of(entry, {"name": "B", "depends_on": ["each"], "trigger": "all_done"}, items=[1, 2])
    run.end("each[1]", Outcome.TEMPORARY_FAILURE)
    run.end("each[0]", Outcome.PERMANENT_FAILURE)
    assert run.status("each") is S.FAILED and run.status("each[1]") is S.SKIPPED
    assert CancelTimer(TimerKind.RETRY, run.activity("each[1]").position, 2) in run.decision.commands
    assert run.scheduled() == ["B"]


def test_a_stale_result_of_an_item_changes_nothing():
    run = run_of(mapped(config={"retry": {"max_attempts": 2}}), items=[1])
    position = run.activity("each[0]").position
    run.end("each[0]", Outcome.TEMPORARY_FAILURE)
    stale = ActivityCompleted(position, 1, Outcome.SUCCEEDED, occurred_at=run._now(), output="old")
    before = run.state
    run.decision = run._decide(stale)
    assert run.state == before and run.decision.history[0].data.get("stale") is True


def test_retry_from_failure_resumes_the_items_and_does_not_run_succeeded_ones_again():
    run = run_of(mapped(), items=[1, 2, 3])
    run.end("each[0]", output="one")
    run.end("each[1]", Outcome.PERMANENT_FAILURE)
    run.end("each[2]", output="three")  # late: recorded
    assert run.state.status is WorkflowStatus.FAILED
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.scheduled() == ["each[1]"] and len(item_ids(run)) == 3
    assert run.activity("each[1]").attempt == 2 and run.status("each") is S.RUNNING
    run.end("each[1]", output="two")
    assert run.activity("each").output == ["one", "two", "three"]
    assert run.state.status is WorkflowStatus.FINISHED


def test_cancel_cancels_the_map_and_its_waiting_items_and_leaves_the_ones_in_flight():
    run = run_of(mapped(max_concurrency=1), items=[1, 2])
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.CANCELLED
    assert [run.status(i) for i in ("each", "each[0]", "each[1]")] == [S.CANCELLED, S.SCHEDULED, S.CANCELLED]


def test_a_required_failure_in_the_same_decision_starts_no_map():
    # The map is decided first (position 0), then the condition fails: the map's items
    # are taken back, nothing is sent.
    run = run_of(
        mapped(independent=True),
        {"name": "B", "id": "bad", "independent": True, "when": "length(`3`)"},
        items=[1, 2],
    )
    assert run.state.status is WorkflowStatus.FAILED
    assert item_ids(run) == [] and not any(isinstance(c, RunActivity) for c in run.decision.commands)
    assert HistoryType.START_MAP not in history_types(run)


def test_a_retry_counts_the_items_still_in_flight_against_max_concurrency():
    run = run_of(mapped(max_concurrency=2), items=[1, 2, 3, 4])
    run.end("each[0]", Outcome.PERMANENT_FAILURE)  # each[1] is still in flight
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.scheduled() == ["each[0]"] and in_flight(run) == ["each[0]", "each[1]"]
    run.end("each[1]", output=2)
    assert run.scheduled() == ["each[2]"]


def test_progress_counted_again_after_a_load_gives_the_same_decisions():
    from dataclasses import replace

    run = run_of(mapped(max_concurrency=2), items=[1, 2, 3, 4, 5])
    run.end("each[1]", output=2)
    assert run.state.map_progress  # kept from one event to the next
    run.state = replace(run.state, map_progress={})  # what a load from the database gives
    run.end("each[0]", output=1)
    assert run.scheduled() == ["each[3]"] and in_flight(run) == ["each[2]", "each[3]"]
