"""Concurrency and rate limits' edge rules: a rate too slow to pace, keys compared as text,
a grant made while paused, a named limit's number, inline limits' names (each a defect
found in review, marked xfail strict until it is fixed), proven on the pure parts
(:func:`flow.core.limits.pace`, :func:`flow.core.limits.key_text`, ``decide()`` with
:func:`flow.core.recovery.owed`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from flow.cli import main
from flow.core.events import PauseRequested
from flow.core.limits import MAX_LIMIT, MIN_RATE, StepLimit, Waiter, admit, key_text, pace
from flow.core.vocabulary import ActivityStatus as S
from flow.errors import DefinitionError
from tests.unit.test_graph import definition
from tests.unit.test_limits import let_in, limited, run_of

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def waiter(key: str = "", n: int = 0, per_s: float | None = None, burst: int | None = None) -> Waiter:
    return Waiter(f"w{n}", 0, 1, 0, key, None, 3, NOW, per_s, burst)


@pytest.mark.parametrize("per_s", [1e-12, 1e-15, 0.0009])
def test_a_rate_too_slow_to_pace_is_refused_by_the_definition(per_s):
    with pytest.raises(DefinitionError) as refused:
        definition({"name": "A", "rate_limit": {"per_s": per_s}})
    assert [path for path, _ in refused.value.problems] == ["$.activities[0].rate_limit.per_s"]


def test_the_slowest_rate_with_the_largest_burst_paces_without_raising():
    definition({"name": "A", "rate_limit": {"per_s": MIN_RATE, "burst": MAX_LIMIT}})  # accepted
    tats = {"": NOW}
    granted, _, _ = pace([waiter()], tats, NOW, per_s=MIN_RATE, burst=MAX_LIMIT)
    assert len(granted) == 1
    granted, changed, next_at = pace([waiter(n=1), waiter(n=2)], {}, NOW, per_s=MIN_RATE, burst=1)
    assert len(granted) == 1 and next_at == NOW + timedelta(seconds=1 / MIN_RATE)


def test_keys_are_compared_as_text_as_documented():
    """Keys are text (as Hatchet's): a string as it is, anything else as its JSON."""
    assert key_text("acme") == "acme"
    assert key_text(1) == key_text("1")
    assert key_text({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_a_grant_made_while_paused_does_not_start_the_step():
    run = run_of(limited(limit=1))
    assert run.status("pay") is S.QUEUED
    run.decision = run._decide(PauseRequested(occurred_at=run._now()))
    assert run.state.paused
    let_in(run, "pay")  # the admitting engine does not know of pauses
    assert run.scheduled() == []
    assert run.status("pay") is not S.SCHEDULED


def test_a_named_limits_number_does_not_depend_on_who_waits_first():
    later = NOW + timedelta(seconds=1)
    strict = [Waiter(f"a{n}", 0, 1, 0, "", 1, 3, NOW if n == 0 else later, None, None) for n in range(5)]
    loose = [Waiter(f"b{n}", 0, 1, 0, "", 10, 3, NOW if n == 0 else later, None, None) for n in range(5)]
    strict_first = admit([strict[0], *strict[1:], *loose[1:]], {}, None)
    loose_first = admit([loose[0], *strict[1:], *loose[1:]], {}, None)
    assert len(strict_first) == len(loose_first), (len(strict_first), len(loose_first))


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_flow_limits_set_refuses_a_rate_that_is_not_a_number(value, monkeypatch):
    monkeypatch.setenv("FLOW_API_URL", "http://127.0.0.1:9")  # nothing listens: no call must be made
    result = CliRunner().invoke(main, ["limits", "set", "email_api", "--per-s", value])
    assert result.exit_code == 2, (result.exit_code, result.output)


def test_two_definitions_inline_limits_never_share_a_name():
    entry = {"concurrency": {"limit": 1}}
    definition({"name": "A", "id": "eu.charge", "concurrency": {"limit": 1}})  # a valid step id
    one = StepLimit.from_entry(entry, definition="billing.eu", step_id="charge")
    other = StepLimit.from_entry(entry, definition="billing", step_id="eu.charge")
    assert one is not None and other is not None
    assert one.name != other.name
