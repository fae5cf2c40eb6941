"""A PostgreSQL link that goes silent (flow.testing.proxy's black hole, partition and
resets): the store gives up within ``silence_s`` (or a tighter deadline) with
StoreUnavailable instead of hanging, the server rolls back what the silent client left
open (its locks let go), and the pool works again once the link heals, with no restart."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.errors import StoreUnavailable
from flow.persistence.database import deadline, open_database, patience, write
from flow.persistence.models import bind
from flow.persistence.store import Store
from flow.testing import new_database, query
from flow.testing.proxy import FaultProxy
from tests.conftest import wait_for

SILENCE_S = 1.5


@pytest.fixture
def linked(services) -> Iterator[tuple[Store, FaultProxy, str]]:
    with new_database() as url:
        with FaultProxy.in_front_of(url) as proxy:
            store = Store(open_database(proxy.url_for(url), pool_size=4, silence_s=SILENCE_S))
            bind(store.database)
            store.migrate(partitions=4)
            yield store, proxy, url
            store.database.close_all()


def timed_failure(call) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        call()
    assert "database" in str(raised.value)
    return time.monotonic() - started


def test_a_black_holed_link_fails_within_the_silence_limit_and_heals(linked):
    store, proxy, _ = linked
    store.ping()
    proxy.black_hole()
    # On a pooled connection (waiting on a statement), then on a new one (connecting).
    assert SILENCE_S * 0.9 <= timed_failure(store.ping) < SILENCE_S + 3
    assert timed_failure(store.ping) < SILENCE_S + 3
    proxy.heal()
    store.ping()


def test_a_deadline_tighter_than_the_silence_limit_wins(linked):
    store, proxy, _ = linked
    store.ping()
    proxy.black_hole()
    with deadline(0.3):
        assert timed_failure(store.ping) < SILENCE_S
    proxy.heal()
    store.ping()


def test_a_partition_fails_at_once_and_heals(linked):
    store, proxy, _ = linked
    store.ping()
    proxy.partition()
    # The open connection is black-holed, new ones are refused.
    assert timed_failure(store.ping) < SILENCE_S + 3
    assert timed_failure(store.ping) < 1.0
    proxy.heal()
    store.ping()


def test_the_server_rolls_back_a_transaction_whose_client_went_silent(linked):
    """A client cut off mid-transaction holds no lock for longer than the silence limit:
    a takeover that waits for the lease row is let through."""
    store, proxy, url = linked
    with pytest.raises(StoreUnavailable), write(store.database):
        store.database.execute_sql("SELECT * FROM partition_leases WHERE partition = 0 FOR UPDATE")
        proxy.black_hole()
        store.database.execute_sql("SELECT 1")
    # Direct to the server (not through the proxy): the row is free once the server gave up on the client.
    started = time.monotonic()
    wait_for(
        lambda: (
            query(
                url,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'partition_leases' AND l.mode = 'RowShareLock'",
            )[0][0]
            == 0
        ),
        timeout_s=15,
        what="the server to roll back the silent client's transaction",
    )
    assert time.monotonic() - started < SILENCE_S + 5
    query(url, "SET lock_timeout = 1000; SELECT * FROM partition_leases WHERE partition = 0 FOR UPDATE")
    proxy.heal()
    store.ping()


def test_a_reset_in_the_middle_of_a_commit_leaves_nothing_half_written(linked):
    store, proxy, url = linked
    proxy.reset_on(b"COMMIT")
    with pytest.raises(StoreUnavailable), write(store.database):
        store.database.execute_sql("CREATE TABLE half (x int)")
        store.database.execute_sql("INSERT INTO half VALUES (1)")
    assert query(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'")[0][0] == 0
    store.ping()  # the broken connection was discarded; a new one works at once


def test_threads_waiting_on_a_silent_database_give_up_together_not_one_after_another(linked):
    """The pool opens and checks connections outside its locks: 8 threads (4 pooled
    connections, 4 new ones) all fail within about one silence limit, not eight."""
    store, proxy, _ = linked
    proxy.black_hole()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        took = list(pool.map(lambda _: timed_failure(store.ping), range(8)))
    assert max(took) < SILENCE_S * 2 + 1, took
    proxy.heal()
    store.ping()


def test_a_statement_longer_than_the_silence_limit_runs_only_with_patience(linked):
    """A long statement sends nothing until it ends, like a stalled link: the silence
    bound gives it up, unless the block was given patience."""
    store, _, _ = linked

    def sleep_in_the_database() -> None:
        with store.unit_of_work():
            store.database.execute_sql(f"SELECT pg_sleep({SILENCE_S + 0.5})")

    assert timed_failure(sleep_in_the_database) < SILENCE_S + 3
    with patience():
        sleep_in_the_database()


def test_a_migration_waits_for_a_lock_held_longer_than_the_silence_limit(linked):
    """``flow migrate`` beside an engine whose transaction holds a lock for a while (or
    while it builds an index on a large table) is not given up at FLOW_DATABASE_TIMEOUT_S."""
    store, _, url = linked

    def hold_the_migrations_table() -> None:
        query(
            url,
            f"BEGIN; LOCK TABLE schema_migration IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({SILENCE_S + 1.5}); COMMIT",
        )

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder = pool.submit(hold_the_migrations_table)
        wait_for(
            lambda: (
                holder.done()
                or query(
                    url,
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE c.relname = 'schema_migration' AND l.mode = 'AccessExclusiveLock'",
                )[0][0]
                == 1
            ),
            timeout_s=15,
            what="the other session to lock the migrations table",
        )
        started = time.monotonic()
        assert store.migrate(partitions=4) == []
        assert time.monotonic() - started > SILENCE_S
        holder.result()


def test_the_readme_example_runs(services, capsys):
    """README, "When the network lies": the FaultProxy example, as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python\nfrom flow.errors import StoreUnavailable\n")
    example = readme[start:].split("\n", 1)[1].split("```", 1)[0]
    with new_database() as url:
        exec(compile(example, "README.md", "exec"), {"database_url": url})  # noqa: S102 - the README's own example
    assert "the database sent nothing for 2 s" in capsys.readouterr().out
