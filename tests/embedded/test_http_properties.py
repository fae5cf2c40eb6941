"""Generated hostile requests against the HTTP doors (hypothesis): never a 5xx, every
refusal a JSON error, nothing stored unless the answer says it was created, and
whatever was created reads back as strict JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from flow.core.strict_json import loads
from flow.process.embedded import EmbeddedFlow
from flow.testing.definitions import sample_definitions
from tests.embedded.conftest import flow_of
from tests.hostile import CURSORS, hostile_start_texts, post_json, workflow_count

PROPERTIES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def api(tmp_path_factory, http_server) -> Iterator[tuple[EmbeddedFlow, falcon.testing.TestClient]]:
    with flow_of(tmp_path_factory.mktemp("properties"), sample_definitions(http_server)) as flow:
        yield flow, falcon.testing.TestClient(create_app(runtime=flow.runtime))


def assert_answered(result: falcon.testing.Result) -> object:
    """Not a 5xx, and a body a strict JSON client reads; return the body."""
    assert result.status_code < 500, result.text[:500]
    return loads(result.content)


@PROPERTIES
@given(body=hostile_start_texts(), key=st.none() | st.sampled_from(["k\x00", "", "k" * 256]) | st.text(max_size=5))
def test_a_generated_start_is_created_or_refused_never_half_stored(api, body, key):
    flow, client = api
    before = workflow_count(flow.runtime.store)
    headers = {} if key is None else {"Idempotency-Key": key}
    result = post_json(client, "/workflows", body, **headers)
    answer = assert_answered(result)
    after = workflow_count(flow.runtime.store)
    if result.status_code == 201:
        assert after == before + 1
        shown = client.simulate_get(f"/workflows/{answer['id']}")
        assert shown.status_code == 200 and loads(shown.content)["id"] == answer["id"]
    else:
        assert result.status_code in (200, 400, 422), result.text[:300]
        assert after == before
        if result.status_code != 200:  # 200: an earlier start with the same key
            assert answer["errors"][0]["path"]


TEXT = st.text(max_size=12) | st.sampled_from(["\x00", "a\x00b", "0001-01-01T00:00:00+01:00", "9" * 5000, *CURSORS])


@PROPERTIES
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "name", "created_after", "created_before", "cursor", "limit", "after"]), TEXT
    ),
    workflow_id=TEXT,
)
def test_generated_query_and_path_parameters_never_fail_the_server(api, params, workflow_id):
    flow, client = api
    before = workflow_count(flow.runtime.store)
    assert_answered(client.simulate_get("/workflows", params=params))
    for path in ("", "/activities", "/events"):
        quoted = falcon.uri.encode_value(workflow_id) or "x"
        assert_answered(client.simulate_get(f"/workflows/{quoted}{path}", params=params))
    assert_answered(client.simulate_get(f"/definitions/{falcon.uri.encode_value(workflow_id) or 'x'}"))
    assert workflow_count(flow.runtime.store) == before


def test_a_generated_workflow_list_is_strict_json(api):
    _, client = api
    body = json.loads(client.simulate_get("/workflows", params={"limit": 500}).text)
    for item in body["items"]:
        assert loads(client.simulate_get(f"/workflows/{item['id']}").content)["id"] == item["id"]
