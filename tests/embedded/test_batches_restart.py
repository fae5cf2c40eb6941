"""A batch whose engine stops mid-batch goes on, after a restart on the same database,
where it stopped: every matched workflow retried exactly once (two embedded flows one
after the other; apart from test_batches.py, whose flow lives for its whole module)."""

from __future__ import annotations

from collections import Counter

import falcon.testing

from api.app import create_app
from flow.errors import StoreUnavailable
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of
from tests.embedded.test_batches import (
    DEFINITIONS,
    all_failed,
    batch,
    failed_workflows,
    finished,
    retries_of,
    start_batch,
)


def test_a_batch_goes_on_after_its_engine_restarts_and_handles_no_workflow_twice(tmp_path, monkeypatch):
    with flow_of(tmp_path, DEFINITIONS, FLOW_BATCH_RATE="20") as first:
        ids = failed_workflows(first, 60)
        controls = first.runtime.batches
        real_apply = controls.apply
        sent = []

        def apply_then_lose_the_record(batch, item):
            """The 10th control is sent, then the database "fails" before its outcome is
            recorded: the item stays pending, as after an engine killed at that moment."""
            settled = real_apply(batch, item)
            sent.append(item.workflow_id)
            if len(sent) == 10:
                raise StoreUnavailable("database unavailable: injected after the send")
            return settled

        monkeypatch.setattr(controls, "apply", apply_then_lose_the_record)
        client = falcon.testing.TestClient(create_app(runtime=first.runtime))
        started = start_batch(client, {"operation": "retry", "filter": {"name": "Refused"}})
        wait_for(lambda: batch(client, started["id"])["done"] >= 20, timeout_s=30, what="20 retries sent")
    # The first engine stopped mid-batch; a new one on the same database goes on.
    with flow_of(tmp_path, DEFINITIONS, FLOW_BATCH_RATE="20") as second:
        client = falcon.testing.TestClient(create_app(runtime=second.runtime))
        assert batch(client, started["id"])["done"] < 60
        done = finished(client, started["id"])
        assert (done["matched"], done["done"], done["failed"], done["skipped"]) == (60, 60, 0, 0)
        once = Counter({i: 1 for i in ids})
        wait_for(lambda: retries_of(second, ids) == once, timeout_s=30, what="one retry of each")
        all_failed(second, ids)  # nothing in flight any more
        assert retries_of(second, ids) == once
