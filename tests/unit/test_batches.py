"""The pure parts of bulk operations: the batch request and its filter, the pacing of
a batch's passes, pages and their cursor, and the counts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flow.core.batches import BatchOperation, Counts, Outcome, Page, pace, paced, parse_batch_request
from flow.core.vocabulary import WorkflowStatus
from flow.core.workflow_filter import WorkflowFilter, from_json, parse_filter
from flow.errors import InvalidInput

T0 = datetime(2026, 12, 7, 9, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- pacing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paced_until", "now_s", "rate", "window_s", "allowed"),
    [
        (None, 0, 100, 0.2, 20),  # a new batch: one window's worth
        (at(-60), 0, 100, 0.2, 20),  # idle for a minute: no backlog, one window
        (at(0), 0, 100, 0.2, 0),  # paced up to now: nothing yet
        (at(0), 0.05, 100, 0.2, 5),
        (at(0.1), 0.05, 100, 0.2, 0),  # ahead of time (handled more than due)
        (None, 0, 2, 0.5, 1),  # a slow rate: one at a time
        (at(0), 0.49, 2, 0.5, 0),
        (at(0), 0.5, 2, 0.5, 1),
    ],
)
def test_a_pass_may_handle_what_is_due_at_the_rate(paced_until, now_s, rate, window_s, allowed):
    assert pace(paced_until, at(now_s), rate_per_s=rate, window_s=window_s).allowed == allowed


def test_a_batch_driven_pass_after_pass_never_goes_faster_than_its_rate():
    rate, poll_s = 100.0, 0.2
    paced_until, handled = None, 0
    for n in range(1, 51):  # 50 passes, 10 s
        allowance = pace(paced_until, at(n * poll_s), rate_per_s=rate, window_s=poll_s)
        handled += allowance.allowed
        paced_until = paced(allowance.paced_until, allowance.allowed, rate_per_s=rate)
    assert 999 <= handled <= rate * 10 + rate * poll_s


def test_a_pass_that_handles_fewer_than_allowed_keeps_the_rest_for_the_next():
    first = pace(None, at(0), rate_per_s=100, window_s=0.2)
    after = paced(first.paced_until, 5, rate_per_s=100)  # handled 5 of 20
    assert pace(after, at(0), rate_per_s=100, window_s=0.2).allowed == 15


# -- pages and counts --------------------------------------------------------------------


def keys(count: int) -> tuple[tuple[datetime, str], ...]:
    return tuple((at(i), f"w{i:03}") for i in range(count))


@pytest.mark.parametrize(
    ("found", "asked", "last", "cursor"),
    [
        (keys(20), 20, False, (at(19), "w019")),  # a full page: maybe more after it
        (keys(7), 20, True, (at(6), "w006")),
        ((), 20, True, None),  # nothing after the cursor: keep the old one
    ],
)
def test_a_short_page_is_the_last_and_the_cursor_is_its_last_key(found, asked, last, cursor):
    page = Page(found, asked)
    assert (page.last, page.cursor) == (last, cursor)


def test_paging_with_the_cursor_visits_every_key_once_in_order():
    """The keyset rule the store applies ((created_at, id) after the cursor), here on a
    list: pages of 7 over 30 keys, some sharing a creation time."""
    every = sorted((at(i // 3), f"w{i:03}") for i in range(30))
    cursor, seen = None, []
    while True:
        page = Page(tuple(k for k in every if cursor is None or k > cursor)[:7], 7)
        seen += page.keys
        cursor = page.cursor or cursor
        if page.last:
            break
    assert seen == every


def test_counts_add_each_settled_outcome_and_pending_is_the_rest():
    counts = Counts(matched=10, done=2, failed=0, skipped=1)
    assert counts.pending == 7
    settled = counts.settled({"a": Outcome.DONE, "b": Outcome.DONE, "c": Outcome.FAILED, "d": Outcome.SKIPPED})
    assert settled == Counts(10, 4, 1, 2) and settled.pending == 3


# -- the request -------------------------------------------------------------------------


def test_a_batch_request_carries_its_operation_filter_and_rerun_options():
    request = parse_batch_request(
        {
            "operation": "rerun",
            "filter": {"status": "Failed", "created_after": "2026-12-01T01:00:00+01:00", "input": {"a": 1}},
            "rerun": {"from": "ship", "version": 4},
            "created_by": "ops",
        }
    )
    assert request.operation is BatchOperation.RERUN and request.rerun == {"from": "ship", "version": 4}
    assert request.filter == WorkflowFilter(status="Failed", created_after=datetime(2026, 12, 1), input={"a": 1})
    assert request.created_by == "ops"


@pytest.mark.parametrize(
    ("rerun", "path", "message"),
    [
        ({}, "$.rerun.from", "required: the id of the step"),
        ({"from": ""}, "$.rerun.from", "must be the id of the step"),
        ({"from": "x" * 201}, "$.rerun.from", "must be the id of the step"),
        ({"from": "ship", "version": 0}, "$.rerun.version", "must be a version of the workflows' definition"),
        ({"from": "ship", "version": "4"}, "$.rerun.version", "must be a version of the workflows' definition"),
        ({"from": "ship", "input_data": 5}, "$.rerun.input_data", "must be a JSON object"),
        ([], "$.rerun", "must be an object"),
    ],
)
def test_wrong_rerun_options_are_refused_as_the_rerun_of_one_workflow_refuses_them(rerun, path, message):
    """Each message reads as the rule, as ``POST /workflows/{id}/rerun``'s do (they were
    jsonschema's own: "0 is less than the minimum of 1"), and an id the rerun of one
    workflow refuses (over 200 characters) is refused here too."""
    with pytest.raises(InvalidInput) as refused:
        parse_batch_request({"operation": "rerun", "filter": {}, "rerun": rerun})
    assert refused.value.path == path and refused.value.message.startswith(message), refused.value.message


@pytest.mark.parametrize(
    ("given", "path", "message"),
    [
        ({"status": "Broken"}, "status", "must be one of " + ", ".join(s.value for s in WorkflowStatus)),
        ({"name": "no spaces"}, "name", "must be a workflow definition name"),
        ({"created_before": "soon"}, "created_before", "must be an ISO 8601 timestamp"),
        ({"created_after": 20261201}, "created_after", "must be an ISO 8601 timestamp"),
        ({"priority": 9}, "priority", "must be an integer from 1 to 5"),
        ({"priority": True}, "priority", "must be an integer from 1 to 5"),
        ({"parent_id": "x" * 37}, "parent_id", "must be a workflow id"),
        ({"input": "order"}, "input", "must be a JSON object"),
        ({"colour": "red"}, "colour", "unknown filter"),
    ],
)
def test_a_wrong_filter_is_refused_naming_it_the_same_at_both_doors(given, path, message):
    for prefix in ("", "$.filter."):
        with pytest.raises(InvalidInput) as refused:
            parse_filter(given, prefix=prefix)
        assert refused.value.path == prefix + path and message in refused.value.message


def test_a_filter_written_and_read_back_is_the_same_and_narrows_to_before_its_batch():
    match = parse_filter({"name": "Orders", "created_before": "2026-12-07T10:00:00Z", "priority": 2})
    assert from_json(match.to_json()) == match
    assert match.before(at(0)).created_before == at(0)  # the batch was created earlier
    assert match.before(at(7200)).created_before == datetime(2026, 12, 7, 10)


def test_a_filter_with_attribute_conditions_reads_back_as_it_was_written():
    """A batch stores its filter as JSON; its attr.* conditions come back the same, and
    a JSON number in a body's filter is read as its text (as GET /workflows' parameters)."""
    parsed = parse_filter({"status": "Failed", "attr.customer": "acme", "attr.amount.gt": 100})
    assert [(c.name, c.operator, c.text) for c in parsed.attributes] == [
        ("customer", "eq", "acme"),
        ("amount", "gt", "100"),
    ]
    assert parsed.to_json() == {"status": "Failed", "attr.customer": "acme", "attr.amount.gt": "100"}
    assert from_json(parsed.to_json()) == parsed
    with pytest.raises(InvalidInput) as refused:
        parse_filter({"attr.amount.between": "1"})
    assert refused.value.path == "attr.amount.between"
