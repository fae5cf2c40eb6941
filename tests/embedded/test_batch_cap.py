"""The batches running at once are bounded: each is paced at ``FLOW_BATCH_RATE``, so
without a cap a client that starts a thousand batches over ``{}`` asks the engines for
a thousand times the rate. Past ``MAX_LIVE_BATCHES`` a new batch is refused (409,
saying how many run and what to do), and nothing is stored; a batch sent again with
its Idempotency-Key is still the first one."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.core import batches
from flow.process.embedded import EmbeddedFlow
from tests.embedded.conftest import flow_of

ECHO = {"name": "Echo", "activities": [{"name": "EchoActivity"}]}
#: Matches the three workflows below; at this rate one a 100 s: it stays running.
SLOW = {"operation": "cancel", "filter": {}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[falcon.testing.TestClient]:
    flow: EmbeddedFlow
    with flow_of(tmp_path_factory.mktemp("batch_cap"), {"Echo": ECHO}, FLOW_BATCH_RATE="0.01") as flow:
        for n in range(3):
            flow.start("Echo", {"n": n})
        yield falcon.testing.TestClient(create_app(runtime=flow.runtime))


def test_a_batch_past_the_cap_of_running_batches_is_refused_and_not_stored(client, monkeypatch):
    monkeypatch.setattr(batches, "MAX_LIVE_BATCHES", 2)
    first = client.simulate_post("/batches", json=SLOW, headers={"Idempotency-Key": "first"})
    assert first.status_code == 202, first.text
    assert client.simulate_post("/batches", json=SLOW).status_code == 202
    refused = client.simulate_post("/batches", json=SLOW)
    assert refused.status_code == 409, refused.text
    assert "2 batches are running" in refused.json["description"]
    assert len(client.simulate_get("/batches").json["items"]) == 2
    again = client.simulate_post("/batches", json=SLOW, headers={"Idempotency-Key": "first"})
    assert again.status_code == 200, again.text
    cancelled = client.simulate_post(f"/batches/{first.json['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
