"""The lease round against a fake lease table: its statements run under a deadline that
ends when its leases would stop being valid, its releases wait for the broker within
half of that, and an engine cut off from its broker neither renews nor heartbeats (so
the others' fair shares take its partitions)."""

from __future__ import annotations

import time
from typing import Any

from flow.engine.leases import LeaseKeeper
from flow.persistence import database


class FakeLeases:
    """A lease table of one engine that records what it was asked, and under which deadline."""

    def __init__(self) -> None:
        self.heartbeats = 0
        self.deadlines: list[float | None] = []
        self.live = ["me"]
        self.released: list[int] = []

    def _seen(self) -> None:
        self.deadlines.append(getattr(database._thread_deadline, "at", None))

    def heartbeat(self, engine_id: str, **_: Any) -> None:
        self._seen()
        self.heartbeats += 1

    def renew(self, engine_id: str, held: dict[int, int], *, lease_s: float) -> dict[int, int]:
        self._seen()
        return dict(held)

    def live_engines(self, *, within_s: float) -> list[str]:
        return self.live

    def lease_owners(self) -> dict[int, tuple[str | None, int, Any]]:
        return {}

    def acquire(self, engine_id: str, count: int, *, lease_s: float, dead_owners: set[str]) -> dict[int, int]:
        self._seen()
        return {p: 1 for p in range(count)}

    def release(self, engine_id: str, partition: int, epoch: int) -> None:
        self.released.append(partition)


def keeper(store: FakeLeases, *, broker_ok: bool = True) -> tuple[LeaseKeeper, list[int], list[int]]:
    acquired: list[int] = []
    lost: list[int] = []
    return (
        LeaseKeeper(
            store,  # type: ignore[arg-type]
            engine_id="me",
            partitions=4,
            lease_s=3.0,
            on_acquired=lambda p, _epoch: acquired.append(p),
            on_lost=lost.append,
            on_release=lambda p, _within_s: None,
            broker_ok=lambda: broker_ok,
        ),
        acquired,
        lost,
    )


def test_the_lease_tables_statements_run_under_a_deadline_no_later_than_the_leases_validity():
    store = FakeLeases()
    leases, acquired, _ = keeper(store)
    leases.round()
    # Bounded by when the round ended, not when it began: on a busy machine the round
    # itself may wait for its turn for longer than any margin.
    ended = time.monotonic()
    assert acquired == [0, 1, 2, 3]
    assert store.deadlines and all(d is not None and d <= ended + 1.0 for d in store.deadlines)
    store.deadlines.clear()
    leases.round()
    renewed = time.monotonic()
    # Renewed: now the deadline is when the renewed leases stop being valid (0.9 of the lease).
    assert all(d is not None and d <= renewed + 0.9 * 3.0 for d in store.deadlines)
    assert getattr(database._thread_deadline, "at", None) is None  # nothing left behind


def test_an_engine_cut_off_from_its_broker_neither_renews_nor_heartbeats_and_loses_its_leases():
    store = FakeLeases()
    leases, _, lost = keeper(store)
    leases.round()
    assert store.heartbeats == 1
    leases.broker_ok = lambda: False
    leases._valid_until = time.monotonic() - 1  # its leases would have expired by now
    leases.round()
    assert store.heartbeats == 1  # not counted live: the other engines' shares take its partitions
    assert lost == [0, 1, 2, 3] and leases.held_partitions() == set()


def test_the_releases_of_a_round_wait_for_the_broker_within_half_the_leases_validity():
    """A release waits for the broker's confirms of what was sent for its partition (so its
    next owner does not send them again). A broker that does not confirm used to hold the
    round 5 s per release, past a 3 s lease: the other engine took partitions this one still
    counted as its own (seen in the soak, python -m bench.soak)."""
    store = FakeLeases()
    waited: list[float] = []

    def release(_partition: int, within_s: float) -> None:
        waited.append(within_s)
        time.sleep(within_s)  # a broker that never confirms: the release spends all it is given

    lost: list[int] = []
    leases = LeaseKeeper(
        store,  # type: ignore[arg-type]
        engine_id="me",
        partitions=4,
        lease_s=0.2,
        on_acquired=lambda p, _epoch: None,
        on_lost=lost.append,
        on_release=release,
    )
    leases.round()  # alone: all four
    store.live = ["me", "other"]
    leases.round()  # two live: two released, the other two renewed and kept
    assert store.released == [2, 3] and leases.held_partitions() == {0, 1} and lost == []
    assert len(waited) == 2 and sum(waited) <= 0.45 * 0.2


def test_the_releases_at_shutdown_share_one_wait_for_the_brokers_confirms():
    # RabbitMQ blocking the engine's publishes: no confirm comes, so each release waits all
    # it is given. Given the patience each, 16 partitions took 16 x 5 s = 80 s to stop.
    store = FakeLeases()
    given: list[float] = []

    def release_waiting_for_confirms_that_never_come(partition: int, within_s: float) -> None:
        given.append(within_s)
        time.sleep(within_s)

    leases = LeaseKeeper(
        store,  # type: ignore[arg-type]
        engine_id="me",
        partitions=16,
        lease_s=3.0,
        on_acquired=lambda p, _epoch: None,
        on_lost=lambda p: None,
        on_release=release_waiting_for_confirms_that_never_come,
        release_patience_s=0.5,
    )
    leases.round()
    assert len(leases.held) == 16
    leases.stop(release=True)
    assert store.released == list(range(16)) and not leases.held
    # The first waits its 0.5 s; the others are handed what is left of it: nothing.
    assert given[0] <= 0.5 and sum(given) <= 0.5 + 0.01 * 16
