"""``map``: an activity run once per item, decided by the pure ``decide()``, rule by rule."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from flow.core.commands import CancelTimer, RunActivity, StartTimer
from flow.core.events import ActivityCompleted, CancelRequested, RetryRequested, TimerFired
from flow.core.kinds import map as maps
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.engine.planning import Routes, plan
from flow.persistence.records import to_json
from tests.unit.test_graph import T0, Run, problems, state_of

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


# -- a workflow wedged In Progress ------------------------------------------------------


def test_an_item_that_fails_while_its_map_waits_after_a_retry_does_not_wedge_the_workflow():
    """A retry from failure "resumes the map over the same items". Here the map, after
    the retry, waits for its dependency A to run again; meanwhile an item still in
    flight from the first run fails permanently. ``maps.item_ended`` ignores it (the map
    is not Running) and leaves the item Failed; when A ends, ``maps.start`` resumes the
    map over items [Failed, Succeeded]: nothing is pending, nothing in flight, and
    ``done`` stops at the failed item forever. The map stays Running and the workflow
    In Progress, with nothing owed to it: no result, no timer will ever come."""
    run = run_of(
        {"name": "A", "required": False},
        mapped(depends_on=["A"]),
        {"name": "B", "independent": True},
        items=[1, 2],
    )
    run.end("A", Outcome.PERMANENT_FAILURE)  # optional: counts as done, the map starts
    assert run.scheduled() == ["each[0]", "each[1]"]
    run.end("B", Outcome.PERMANENT_FAILURE)  # the workflow fails; both items in flight
    assert run.state.status is WorkflowStatus.FAILED
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.status("each") is S.PENDING  # waits for A, which runs again
    run.end("each[0]", Outcome.PERMANENT_FAILURE)  # results of the first run's attempts
    run.end("each[1]", output=2)
    run.end("A", output="a")
    run.end("B", output="b")
    # Either the failed item runs again, or the map fails: never Running with nothing to wait for.
    assert in_flight(run) or run.status("each") is not S.RUNNING, [(a.id, a.status.value) for a in run.state.activities]
    assert run.state.status is not WorkflowStatus.IN_PROGRESS or in_flight(run)


# -- items of a map that already failed -----------------------------------------------------


def _optional_map_failed_with_an_item_in_flight() -> Run:
    entry = mapped(required=False, config={"retry": {"max_attempts": 3, "initial_delay_ms": 10}})
    run = run_of(entry, {"name": "B", "id": "long", "independent": True}, items=[1, 2])
    run.end("each[0]", Outcome.PERMANENT_FAILURE)
    assert run.status("each") is S.FAILED and run.status("each[1]") is S.SCHEDULED
    assert run.state.status is WorkflowStatus.IN_PROGRESS  # "long" still runs
    return run


def test_an_item_of_a_map_that_already_failed_is_not_retried():
    """The map failed: "items not yet run are skipped", an item waiting for a retry is
    skipped and its timer cancelled (``maps._failed``). But an item still in flight
    that then fails temporarily is put in Waiting Retry with a new retry timer, and
    that timer sends a new attempt of an item of a map that has already failed (its
    result is then ignored: "map Failed")."""
    run = _optional_map_failed_with_an_item_in_flight()
    run.end("each[1]", Outcome.TEMPORARY_FAILURE)
    retry_timers = [c for c in run.decision.commands if isinstance(c, StartTimer) and c.kind == TimerKind.RETRY]
    assert retry_timers == [], "a retry timer was set for an item of a failed map"
    assert run.status("each[1]") is not S.WAITING_RETRY


def test_a_finished_workflow_has_no_item_left_waiting_for_a_retry():
    """The workflow "finishes when every activity has ended". An item of a failed
    optional map that went to Waiting Retry after its map failed is left so in a
    Finished workflow (its timer is cancelled, its status never ends)."""
    run = _optional_map_failed_with_an_item_in_flight()
    run.end("each[1]", Outcome.TEMPORARY_FAILURE)
    run.end("long")
    assert run.state.status is WorkflowStatus.FINISHED
    leftover = [(a.id, a.status.value) for a in run.state.activities if a.status is S.WAITING_RETRY]
    assert leftover == []


def test_no_new_attempt_is_sent_for_an_item_of_a_failed_map():
    run = _optional_map_failed_with_an_item_in_flight()
    run.end("each[1]", Outcome.TEMPORARY_FAILURE)
    item = run.activity("each[1]")
    run.decision = run._decide(TimerFired(TimerKind.RETRY, item.position, item.attempt + 1, occurred_at=run._now()))
    assert not any(isinstance(c, RunActivity) for c in run.decision.commands), run.decision.commands


# -- items that cannot be stored, shown or run ------------------------------------------------


def test_an_item_that_is_not_json_fails_the_map_before_it_runs():
    """Every door refuses NaN/Infinity (strict_json: "browsers and strict clients fail
    on a workflow that holds them"), but ``map.over`` makes items from JMESPath:
    ``to_number`` turns the valid input string "1.5e999" into ``inf``, which is listed
    as an item, stored, sent to a worker and shown by the API as ``Infinity``."""
    run = run_of(mapped(over="input.items[*].to_number(@)"), items=["1.5e999", "2"])
    assert not any(getattr(a.spec, "item", None) == float("inf") for a in run.state.activities), "an item is Infinity"
    assert run.status("each") is S.FAILED and item_ids(run) == []


def test_an_item_holding_a_lone_surrogate_or_nul_fails_the_map_before_it_runs():
    """A JSON literal in ``over`` (the definition's text holds only ASCII escapes, which
    strict_json lets through) evaluates to a lone surrogate and a NUL: items no door
    accepts as input (GET /workflows/{id} then answers 500, see
    tests/embedded/test_maps_review.py)."""
    run = run_of(mapped(over='[`"\\ud800"`, `"a\\u0000b"`]'))
    assert [a.spec for a in run.state.activities if a.parent is not None] == []
    assert run.status("each") is S.FAILED


# -- cost -------------------------------------------------------------------------------------


def _start_map_outbox_bytes(n: int) -> int:
    items = [f"s3://bucket/images/img{i:06d}.png" for i in range(n)]
    run = Run(state_of(mapped(), input_data={"items": items}))
    planned = plan(
        run.state,
        ((c, T0) for c in run.decision.commands),
        Routes(partition=0, reply_to="r", activity_queue="q"),
        send_after=T0,
    )
    return sum(len(to_json(o.kwargs)) for o in planned.owed)


def test_starting_a_map_over_the_inputs_list_costs_linear_bytes_not_quadratic():
    """ "Listing N items is O(N) once" (docs/design.md). But every item's attempt message
    carries the whole input (and every output), and the input holds the list: the
    transition that starts a map over ``input.items`` writes N messages of O(N) bytes
    each. 5,000 file names (a 180 KB input, under the 256 KiB limit) give about 880 MB
    of outbox rows in one transaction; four times the items, sixteen times the bytes."""
    small, large = _start_map_outbox_bytes(500), _start_map_outbox_bytes(2000)
    assert large / small < 8, f"{small} bytes for 500 items, {large} for 2,000 ({large / small:.1f}x)"
    input_bytes = len(json.dumps({"items": [f"s3://bucket/images/img{i:06d}.png" for i in range(2000)]}))
    assert large < 20 * input_bytes, f"{large} bytes of messages for a {input_bytes}-byte input"


def test_the_rows_a_map_start_inserts_do_not_copy_the_config_once_per_item():
    """ "At most 10,000 items: a workflow's state stays a few megabytes" (docs/design.md).
    Each item row stores the map's whole effective config (``activity_row``: ``config``),
    so the start transition writes (and a load after a restart parses back, into one
    dict per item) items x config bytes: a definition may be 1 MiB (FLOW_MAX_BODY_BYTES),
    so 10,000 items of a map with a 100 KB config are 1 GB of rows in one statement.
    Here 1,000 items and a 100 KB config: 100 MB."""
    from flow.persistence.mapping import activity_row

    config = {"lookup": {f"key{i:05d}": "v" * 80 for i in range(1000)}}  # about 100 KB of JSON
    run = run_of(mapped(config=config), items=list(range(1000)))
    added = [a for a in run.state.activities if a.parent is not None]
    assert len(added) == 1000
    written = sum(len(json.dumps(activity_row("wf", a), default=str)) for a in added)
    config_bytes = len(json.dumps(config))
    assert written < 10 * config_bytes + 1000 * 1000, f"{written} bytes of item rows for a {config_bytes}-byte config"


def test_what_a_transition_changed_is_found_among_thousands_of_items_a_block_at_a_time():
    from flow.persistence.records import replaced

    run = run_of(mapped(), items=list(range(1000)))
    before = run.state.activities
    after = list(before)
    for p in (1, 255, 256, 257, 999):
        after[p] = replace(after[p], attempt=after[p].attempt + 1)
    after[500] = replace(after[500])  # equal to what it replaced: nothing to write
    grown = (*after, replace(after[0], position=len(after)))  # a map's new items are not "replaced"
    assert [a.position for a in replaced(before, grown)] == [1, 255, 256, 257, 999]
    assert replaced(before, before) == [] and replaced(before[:10], before[:10]) == []
