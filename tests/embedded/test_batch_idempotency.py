"""``POST /batches`` honours an ``Idempotency-Key``: a client that sends its request again
(its first reply lost to a timeout) gets the first batch back (200), not a second batch
that would cancel, retry or rerun every matching workflow once more; the key with
another request is a 409, and a key that cannot be one a 422. A rerun input that no
workflow could take is refused before the batch is stored."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from tests.embedded.conftest import flow_of

ECHO = {"name": "Echo", "activities": [{"name": "EchoActivity"}]}
RETRY = {"operation": "retry", "filter": {"status": "Failed", "name": "Echo"}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[falcon.testing.TestClient]:
    flow: EmbeddedFlow
    with flow_of(tmp_path_factory.mktemp("batch_keys"), {"Echo": ECHO}) as flow:
        yield falcon.testing.TestClient(create_app(runtime=flow.runtime))


def post(client, body, key):
    return client.simulate_post("/batches", json=body, headers={"Idempotency-Key": key})


def test_a_batch_sent_again_with_its_key_is_the_first_batch(client):
    first = post(client, RETRY, "nightly-retry-1")
    assert first.status_code == 202, first.text
    again = post(client, RETRY, "nightly-retry-1")
    assert again.status_code == 200, again.text
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == f"/batches/{first.json['id']}"
    listed = [b["id"] for b in client.simulate_get("/batches?limit=500").json["items"]]
    assert listed.count(first.json["id"]) == 1
    assert len(listed) == 1


def test_a_key_sent_with_another_request_is_a_conflict(client):
    assert post(client, RETRY, "key-2").status_code == 202
    other = post(client, {**RETRY, "operation": "cancel"}, "key-2")
    assert other.status_code == 409, other.text
    assert "key-2" in other.json["description"]


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_key_that_cannot_be_one_is_refused_naming_the_header(client, key):
    response = post(client, RETRY, key)
    assert response.status_code == 422, response.text
    assert response.json["errors"][0]["path"] == "Idempotency-Key"


def test_a_rerun_input_over_the_payload_limit_is_refused_before_the_batch_is_stored(client):
    """Stored, it would fail every workflow it matched, one by one, with the same reason."""
    before = len(client.simulate_get("/batches").json["items"])
    body = {"operation": "rerun", "filter": {}, "rerun": {"from": "a", "input_data": {"y": "z" * 300_000}}}
    response = client.simulate_post("/batches", json=body)
    assert response.status_code == 422, response.text
    assert response.json["errors"][0]["path"] == "$.rerun.input_data"
    assert "FLOW_MAX_PAYLOAD_BYTES" in response.json["description"]
    assert len(client.simulate_get("/batches").json["items"]) == before
