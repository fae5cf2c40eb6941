"""The fault suite's harness: a mixed batch of workflows (:data:`flow.testing.definitions.FAULT_DEFINITIONS`,
with the activities of ``flow.testing.activities`` that fail, refuse and kill their process) on a
supervised :class:`flow.testing.Cluster`, checked by :func:`flow.testing.check_settled`."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.testing import Cluster, check_settled, new_database, new_queue_prefix
from flow.testing.definitions import FAST_RETRY, FAULT_DEFINITIONS
from flow.testing.definitions import FAULT_BATCH as BATCH
from flow.testing.definitions import FAULT_EXPECTED as EXPECTED
from tests.conftest import wait_for as _wait_for

__all__ = ["BATCH", "EXPECTED", "FAST_RETRY", "FAULT_DEFINITIONS"]


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
