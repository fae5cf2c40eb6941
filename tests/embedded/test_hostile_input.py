"""Hostile input through every HTTP door, on SQLite: a 4xx that says what is wrong,
never a 5xx, and nothing stored (the same cases run on PostgreSQL in
``tests/integration/test_hostile_input_postgres.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from flow.testing.definitions import sample_definitions
from tests.embedded.conftest import flow_of
from tests.hostile import (
    CURSORS,
    DEEP,
    DEFINITION_BODIES,
    PARAMS,
    START_BODIES,
    assert_refused,
    definition_versions,
    post_json,
    send_json,
    workflow_count,
)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory, http_server) -> Iterator[tuple[EmbeddedFlow, falcon.testing.TestClient]]:
    """One flow for every refusal below: each test checks that it still stores nothing."""
    with flow_of(tmp_path_factory.mktemp("hostile"), sample_definitions(http_server)) as flow:
        yield flow, falcon.testing.TestClient(create_app(runtime=flow.runtime))


@pytest.mark.parametrize(("case", "body", "status", "path"), START_BODIES, ids=[case[0] for case in START_BODIES])
def test_a_hostile_start_is_refused_and_stores_nothing(untouched, case, body, status, path):
    flow, client = untouched
    assert_refused(post_json(client, "/workflows", body), status, path)
    assert workflow_count(flow.runtime.store) == 0
    assert client.simulate_get("/workflows").json["items"] == []


@pytest.mark.parametrize("key", ["k\x00", "k" * 256, ""])
def test_a_hostile_idempotency_key_header_is_refused(untouched, key):
    flow, client = untouched
    result = post_json(client, "/workflows", b'{"name": "DummyWorkflow"}', **{"Idempotency-Key": key})
    assert_refused(result, 422, "Idempotency-Key")
    assert workflow_count(flow.runtime.store) == 0


@pytest.mark.parametrize(
    ("case", "body", "status", "path"), DEFINITION_BODIES, ids=[case[0] for case in DEFINITION_BODIES]
)
def test_a_hostile_definition_is_refused_and_registers_nothing(untouched, case, body, status, path):
    flow, client = untouched
    assert_refused(send_json(client, "PUT", "/definitions/HostileWorkflow", body), status, path)
    assert_refused(post_json(client, "/definitions/validate", body), status, path)
    assert definition_versions(flow.runtime.store, "HostileWorkflow") == 0
    assert client.simulate_get("/definitions/HostileWorkflow").status_code == 404


def test_a_hostile_definition_leaves_the_existing_versions_as_they_were(untouched):
    flow, client = untouched
    body = client.simulate_get("/definitions/DummyWorkflow").json["definition"]
    body["config"]["label"] = "\ud800"
    result = send_json(client, "PUT", "/definitions/DummyWorkflow", json.dumps(body).encode())
    assert_refused(result, 400, "$.config.label")
    assert definition_versions(flow.runtime.store, "DummyWorkflow") == 1
    shown = client.simulate_get("/definitions/DummyWorkflow")
    assert shown.status_code == 200 and shown.json["version"] == 1


CANCEL_BODIES = [(b'{"reason": ' + DEEP + b"}", "$"), (b'{"reason": "\\u0000"}', "$.reason")]


@pytest.mark.parametrize(("body", "path"), CANCEL_BODIES)
def test_a_hostile_cancel_body_is_refused(untouched, body, path):
    _, client = untouched
    assert_refused(post_json(client, "/workflows/00000000-0000-0000-0000-000000000000/cancel", body), 400, path)


@pytest.mark.parametrize(
    ("method", "path", "query", "status"), PARAMS, ids=[f"{p[:40]}?{q[:30]}" for _, p, q, _ in PARAMS]
)
def test_hostile_path_and_query_parameters_are_4xx(untouched, method, path, query, status):
    flow, client = untouched
    assert_refused(client.simulate_request(method, path, query_string=query), status)
    assert workflow_count(flow.runtime.store) == 0


@pytest.mark.parametrize("cursor", CURSORS, ids=range(len(CURSORS)))
def test_a_cursor_this_api_did_not_write_is_422(untouched, cursor):
    _, client = untouched
    assert_refused(client.simulate_get("/workflows", params={"cursor": cursor}), 422, "cursor")
