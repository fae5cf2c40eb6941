"""``map`` against a hostile review: decisions that once went wrong, each kept as a test.

Each test states what the README / docs/design.md ("Maps") promise; each failed before
its fix.
"""

from __future__ import annotations

import json

from flow.core.commands import RunActivity, StartTimer
from flow.core.events import RetryRequested, TimerFired
from flow.core.vocabulary import ActivityStatus, Outcome, TimerKind, WorkflowStatus
from flow.engine.planning import Routes, plan
from flow.persistence.records import to_json
from tests.unit.test_graph import T0, Run, state_of
from tests.unit.test_maps import in_flight, item_ids, mapped, run_of

S = ActivityStatus


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
