"""The fault suite's harness: a mixed batch of workflows (and the activities of
``flow.testing.activities`` that fail, refuse and kill their process) on a supervised
:class:`flow.testing.Cluster`, checked by :func:`flow.testing.check_settled`."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.testing import Cluster, check_settled, new_database, new_queue_prefix
from tests.conftest import wait_for as _wait_for

FAST_RETRY = {"retry": {"max_attempts": 5, "initial_delay_ms": 50, "jitter": 0}}

#: The batch: sequential, independent, retrying and failing activities, a map whose
#: items retry, a sleep, and a child workflow (which retries). Concurrency limits are on
#: (a named one shared by the fan-outs, an inline one on the map's items and on the child
#: step), so every fault also hits steps that queue, hold and give back slots.
FAULT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "SlowSequence": {
        "name": "SlowSequence",
        "config": FAST_RETRY,
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.3}} for _ in range(3)],
    },
    "FanOut": {
        "name": "FanOut",
        "config": FAST_RETRY,
        "activities": [
            *(
                {
                    "name": "SleepActivity",
                    "independent": True,
                    "config": {"sleep_s": 0.2},
                    "concurrency": {"name": "fanout", "limit": 6},
                }
                for _ in range(4)
            ),
            {"name": "EchoActivity"},
        ],
    },
    "Retrying": {
        "name": "Retrying",
        "config": FAST_RETRY,
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}, {"name": "NoopActivity"}],
    },
    "Failing": {
        "name": "Failing",
        "config": FAST_RETRY,
        "activities": [{"name": "NoopActivity"}, {"name": "RefusingActivity"}, {"name": "NoopActivity"}],
    },
    "OptionalBroken": {
        "name": "OptionalBroken",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [
            {"name": "BrokenActivity", "required": False},
            {"name": "SleepActivity", "config": {"sleep_s": 0.1}},
        ],
    },
    "Map": {
        "name": "Map",
        "config": FAST_RETRY,
        "activities": [
            {
                "id": "each",
                "name": "FlakyActivity",
                "map": {"over": "`[1, 2, 3, 4, 5, 6, 7, 8]`", "max_concurrency": 3},
                "config": {"succeed_on_attempt": 2},
                "concurrency": {"key": "to_string(item)", "limit": 4},
            },
            {"name": "SleepActivity", "config": {"sleep_s": 0.1}},
        ],
    },
    "Nap": {
        "name": "Nap",
        "config": FAST_RETRY,
        "activities": [{"name": "NoopActivity"}, {"id": "nap", "sleep_s": 0.3}, {"name": "NoopActivity"}],
    },
    "Parent": {
        "name": "Parent",
        "config": FAST_RETRY,
        "activities": [
            {"name": "NoopActivity"},
            {"id": "child", "workflow": "Retrying", "concurrency": {"limit": 3}},
            {"name": "NoopActivity"},
        ],
    },
    "AwaitApproval": {
        "name": "AwaitApproval",
        "activities": [{"id": "approval", "wait_for": "approved", "timeout_s": 600}, {"name": "NoopActivity"}],
    },
    "LongNap": {
        "name": "LongNap",
        "activities": [{"id": "nap", "sleep_s": 4}, {"name": "NoopActivity"}],
    },
    "LongWait": {
        "name": "LongWait",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 6000, "jitter": 0}},
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}}],
    },
    # A long job that heartbeats every step (the worker sends one per second). Long
    # enough (12 s) that none can finish between the test's seeing all six heartbeat
    # and its killing their workers, even on a busy machine.
    "Heartbeating": {
        "name": "Heartbeating",
        "config": FAST_RETRY,
        "activities": [
            {"name": "BeatActivity", "config": {"steps": 120, "step_s": 0.1, "timeouts": {"heartbeat_s": 2}}},
        ],
    },
    # The same long heartbeating job behind an inline limit of 1 (``SlotBeating.beat``):
    # one workflow at a time holds the slot, so the test can kill the worker of the one
    # that holds it and see when the slot comes back. 10 s a run, so the holder cannot
    # finish between the test's seeing it beat and the kill.
    "SlotBeating": {
        "name": "SlotBeating",
        "config": FAST_RETRY,
        "activities": [
            {
                "id": "beat",
                "name": "BeatActivity",
                "config": {"steps": 100, "step_s": 0.1, "timeouts": {"heartbeat_s": 2}},
                "concurrency": {"limit": 1},
            },
        ],
    },
    "Poison": {
        "name": "Poison",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [{"name": "KillerActivity"}],
    },
}

EXPECTED = {
    "SlowSequence": "Finished",
    "FanOut": "Finished",
    "Retrying": "Finished",
    "Failing": "Failed",
    "OptionalBroken": "Finished",
    "Map": "Finished",
    "Nap": "Finished",
    "Parent": "Finished",
    "AwaitApproval": "Finished",
    "LongNap": "Finished",
    "Poison": "Failed",
    "LongWait": "Finished",
    "Heartbeating": "Finished",
    "SlotBeating": "Finished",
}

BATCH = ["SlowSequence", "FanOut", "Retrying", "Failing", "OptionalBroken", "Map", "Nap", "Parent"]


def fault_cluster_at(base: Path, pg_url: str, prefix: str) -> Cluster:
    """A cluster running the fault batch's definitions with the test activities."""
    return Cluster(base, pg_url, prefix, FAULT_DEFINITIONS, activity_packages="flow.testing.activities")


@pytest.fixture
def fault_cluster(services, tmp_path) -> Iterator[Cluster]:
    with new_database() as pg_url, new_queue_prefix() as prefix:
        cluster = fault_cluster_at(tmp_path, pg_url, prefix)
        try:
            yield cluster
        finally:
            cluster.stop(sig=signal.SIGKILL)  # the test is over: no need to wait for graceful shutdowns


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "") -> Any:
    """The suite's ``wait_for`` with a fault test's patience: its clusters run beside other
    tests on a busy machine, where a restart or a batch's first attempts can take far
    longer than on a quiet one (the timeout only bounds a wait that never comes true)."""
    return _wait_for(condition, timeout_s=timeout_s, what=what)


def verify(cluster: Cluster, started: dict[str, str], *, timeout_s: float = 120) -> dict[str, int]:
    """Wait until the batch settles, then check every invariant against the database."""
    return check_settled(cluster.pg_url, started, EXPECTED, timeout_s=timeout_s)


def report(scenario: str, figures: dict[str, int], faults: int, started_at: float) -> None:
    print(
        f"\nFAULTS {scenario}: {figures['workflows']} workflows, {faults} faults injected, "
        f"lost {figures['lost']}, stuck {figures['stuck']}, duplicated {figures['duplicated']}, "
        f"{time.monotonic() - started_at:.1f} s"
    )
