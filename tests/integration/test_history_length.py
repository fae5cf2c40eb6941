"""Bounded history at the store, on SQLite and on PostgreSQL: each commit adds its
entries to ``history_length`` (no count of the events table), and the one commit that
takes a history past ``FLOW_HISTORY_WARN`` logs a warning, once; the API's view says
what to do."""

from __future__ import annotations

import logging
from dataclasses import replace

from api.views import workflow_view
from flow.core.decide import HistoryEntry
from flow.core.vocabulary import HistoryType
from flow.persistence.history_marks import logger as commit_logger
from tests.integration.test_fencing import A, history, new_workflow, started, stores  # noqa: F401  (the fixture)


def test_history_length_follows_the_commits_and_passing_the_mark_is_logged_once(stores, caplog):  # noqa: F811
    store, engine, _ = stores
    workflow_id, quiet = new_workflow(store), new_workflow(store)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    first = started(engine, workflow_id, epoch=epoch)
    engine.group_commit.history_warn = len(first.history) + 3
    caplog.set_level(logging.WARNING, logger=commit_logger.name)
    assert engine.commit_batch([first, started(engine, quiet, epoch=epoch)], owner=A).committed == [0, 1]
    assert caplog.records == []
    # Three commits of two entries each, batched with another workflow's: the second passes the mark.
    noise = HistoryEntry(HistoryType.DO_NOTHING, data={"reason": "noise"})
    version = first.version + 1
    for _ in range(3):
        loaded = engine.load(workflow_id)
        more = replace(
            first, version=version, after=loaded.state, changed=[], owed=[], history=[(noise, first.history[0][1])] * 2
        )
        assert engine.commit_batch([more], owner=A).committed == [0]
        version += 1
    length = history(engine, workflow_id)
    assert store.get(workflow_id).history_length == length == len(first.history) + 6
    assert store.get(quiet).history_length == history(engine, quiet)
    [record] = caplog.records
    assert workflow_id in record.getMessage() and f"holds {len(first.history) + 4} entries" in record.getMessage()
    view = workflow_view(store.get(workflow_id), history_warn=engine.group_commit.history_warn)
    assert view["history_length"] == length and "child workflow per batch" in view["history_warning"]
    assert workflow_view(store.get(quiet), history_warn=engine.group_commit.history_warn)["history_warning"] is None
