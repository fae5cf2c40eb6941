from __future__ import annotations

import pytest

from flow.core.policy import RetryPolicy


@pytest.mark.parametrize(("failed_attempt", "expected"), [(1, 100), (2, 200), (3, 400), (4, 500), (10, 500)])
def test_delay_grows_by_backoff_up_to_the_maximum(failed_attempt, expected):
    policy = RetryPolicy(initial_delay_ms=100, backoff=2, max_delay_ms=500, jitter=0)
    assert policy.delay_ms(failed_attempt, seed="x") == expected


def test_jitter_stays_within_its_fraction_and_is_deterministic():
    policy = RetryPolicy(initial_delay_ms=1000, backoff=1, jitter=0.2)
    delays = [policy.delay_ms(1, seed=f"wf:{i}") for i in range(200)]
    assert all(800 <= d <= 1200 for d in delays)
    assert len(set(delays)) > 50  # actually spread out
    assert policy.delay_ms(1, seed="wf:7") == policy.delay_ms(1, seed="wf:7")


def test_activity_retry_overrides_workflow_retry_field_by_field():
    policy = RetryPolicy.from_config({"retry": {"max_attempts": 5, "backoff": 3}}, {"retry": {"max_attempts": 2}})
    assert policy.max_attempts == 2
    assert policy.backoff == 3
    assert policy.initial_delay_ms == RetryPolicy().initial_delay_ms
