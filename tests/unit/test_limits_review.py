"""Hostile review of concurrency and rate limits: each test here shows a defect found in
review (marked xfail strict until it is fixed), proven on the pure parts
(:func:`flow.core.limits.pace`, :func:`flow.core.limits.key_text`, ``decide()`` with
:func:`flow.core.recovery.owed`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from flow.cli import main
from flow.core.events import PauseRequested
from flow.core.limits import StepLimit, Waiter, admit, key_text, pace
from flow.core.vocabulary import ActivityStatus as S
from tests.unit.test_graph import definition
from tests.unit.test_limits import let_in, limited, run_of

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def waiter(key: str = "", n: int = 0, per_s: float | None = None, burst: int | None = None) -> Waiter:
    return Waiter(f"w{n}", 0, 1, 0, key, None, 3, NOW, per_s, burst)


@pytest.mark.xfail(
    strict=True,
    reason="pace() computes now + 1/per_s with no bound: a valid tiny per_s (the schemas allow any "
    "number over 0) overflows datetime, and the OverflowError aborts the admission pass",
)
@pytest.mark.parametrize("per_s", [1e-12, 1e-15])
def test_a_tiny_rate_paces_without_raising(per_s):
    # Reachable: the definition's schema takes it (and PUT /limits' schema does too).
    definition({"name": "A", "rate_limit": {"per_s": per_s}})  # accepted
    granted, changed, next_at = pace([waiter(n=1), waiter(n=2)], {}, NOW, per_s=per_s, burst=1)
    assert len(granted) == 1


@pytest.mark.xfail(
    strict=True,
    reason="pace(): burst x interval is subtracted from the key's tat; a large burst with a slow "
    "rate (both within the schemas) underflows datetime",
)
def test_a_slow_rate_with_a_large_burst_paces_without_raising():
    definition({"name": "A", "rate_limit": {"per_s": 1e-6, "burst": 100_000}})  # accepted
    tats = {"": NOW}
    granted, _, _ = pace([waiter()], tats, NOW, per_s=1e-6, burst=100_000)
    assert len(granted) == 1


@pytest.mark.xfail(
    strict=True,
    reason="key_text: a string is stored as it is and anything else as its JSON, so the string '1' "
    "and the number 1 (or 'null' and null, '[1]' and [1]) share one slot count; the docstring says "
    "two keys share a slot only if their values are equal",
)
@pytest.mark.parametrize(("a", "b"), [("1", 1), ("null", None), ("true", True), ('{"a":1}', {"a": 1})])
def test_unequal_key_values_do_not_share_a_slot(a, b):
    assert a != b
    assert key_text(a) != key_text(b)


@pytest.mark.xfail(
    strict=True,
    reason="a slot timer that fires while the workflow is paused schedules the step's first attempt "
    "(ActivityKind.on_timer SLOT checks only ended/queued); README: while paused no activity, map item "
    "or child workflow is started until it resumes",
)
def test_a_grant_made_while_paused_does_not_start_the_step():
    run = run_of(limited(limit=1))
    assert run.status("pay") is S.QUEUED
    run.decision = run._decide(PauseRequested(occurred_at=run._now()))
    assert run.state.paused
    let_in(run, "pay")  # the admitting engine does not know of pauses
    assert run.scheduled() == []
    assert run.status("pay") is not S.SCHEDULED


@pytest.mark.xfail(
    strict=True,
    reason="a key's stored GCRA arrival time (limit_rates.tat) is absolute, computed with the rate of "
    "its time: after a slow rate (set by mistake, or a definition's) is raised by PUT /limits, the "
    "key's waiters still wait out the old interval (here 1000 s at a rate of 100 per s)",
)
def test_a_raised_rate_applies_to_what_waits():
    first, second = waiter(n=1), waiter(n=2)
    granted, tats, _ = pace([first, second], {}, NOW, per_s=0.001, burst=1)
    assert granted == [first]
    later = NOW + timedelta(seconds=1)  # the operator raises the rate to 100 per s
    granted, _, next_at = pace([second], tats, later, per_s=100, burst=1)
    assert granted == [second] or (next_at is not None and next_at <= later + timedelta(seconds=1))


@pytest.mark.xfail(
    strict=True,
    reason="admit() takes a key's number from its first waiter's definition: a named limit whose "
    "definitions give different numbers (or an inline limit across definition versions) lets in 1 or "
    "10 depending on who waits first, while GET /limits shows the largest (max(limit_max))",
)
def test_a_named_limits_number_does_not_depend_on_who_waits_first():
    later = NOW + timedelta(seconds=1)
    strict = [Waiter(f"a{n}", 0, 1, 0, "", 1, 3, NOW if n == 0 else later, None, None) for n in range(5)]
    loose = [Waiter(f"b{n}", 0, 1, 0, "", 10, 3, NOW if n == 0 else later, None, None) for n in range(5)]
    strict_first = admit([strict[0], *strict[1:], *loose[1:]], {}, None)
    loose_first = admit([loose[0], *strict[1:], *loose[1:]], {}, None)
    assert len(strict_first) == len(loose_first), (len(strict_first), len(loose_first))


@pytest.mark.xfail(
    strict=True,
    reason="`flow limits set --per-s` is a FloatRange(0, min_open) that takes nan and inf; the "
    "command then sends NaN/Infinity, which the API's strict JSON reader refuses as a bad body "
    "(400) instead of the CLI refusing the option (a usage error, exit 2)",
)
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_flow_limits_set_refuses_a_rate_that_is_not_a_number(value, monkeypatch):
    monkeypatch.setenv("FLOW_API_URL", "http://127.0.0.1:9")  # nothing listens: no call must be made
    result = CliRunner().invoke(main, ["limits", "set", "email_api", "--per-s", value])
    assert result.exit_code == 2, (result.exit_code, result.output)


@pytest.mark.xfail(
    strict=True,
    reason="an inline limit is named '<definition>.<step id>', and both a definition's name and a "
    "step id may contain dots: definition 'billing.eu' step 'charge' and definition 'billing' step "
    "'eu.charge' (both valid) share one limit, each's steps counting against the other's number",
)
def test_two_definitions_inline_limits_never_share_a_name():
    entry = {"concurrency": {"limit": 1}}
    definition({"name": "A", "id": "eu.charge", "concurrency": {"limit": 1}})  # a valid step id
    one = StepLimit.from_entry(entry, definition="billing.eu", step_id="charge")
    other = StepLimit.from_entry(entry, definition="billing", step_id="eu.charge")
    assert one is not None and other is not None
    assert one.name != other.name
