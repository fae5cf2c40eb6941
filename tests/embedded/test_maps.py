"""``map`` end to end on the embedded flow (SQLite): items and outputs that no other door
lets in (each test failed once, before its fix)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from flow.process.embedded import EmbeddedFlow
from tests.embedded.conftest import flow_of, strict_json

#: Small, so that a few items' outputs go over it.
PAYLOAD_LIMIT = 1000

DEFINITIONS = {
    # A valid input string that JMESPath's to_number turns into inf.
    "NumbersMap": {
        "name": "NumbersMap",
        "activities": [{"id": "each", "name": "ItemActivity", "map": {"over": "input.values[*].to_number(@)"}}],
    },
    # A JSON literal in the expression: the definition's text holds only ASCII escapes.
    "LiteralMap": {
        "name": "LiteralMap",
        "activities": [{"id": "each", "name": "ItemActivity", "map": {"over": '[`"\\ud800"`]'}}],
    },
    # Each item's output is under the payload limit; the list of them is not.
    "BigOutputsMap": {
        "name": "BigOutputsMap",
        "activities": [
            {"id": "each", "name": "BigOutputActivity", "config": {"size": 600}, "map": {"over": "input.items"}},
            {"id": "after", "name": "NoopActivity"},
        ],
    },
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("maps"), DEFINITIONS, FLOW_MAX_PAYLOAD_BYTES=str(PAYLOAD_LIMIT)) as running:
        yield running


def test_the_workflow_view_of_a_map_over_numbers_is_json(flow, client):
    """strict_json refuses Infinity at every door ("browsers and strict clients fail on
    a workflow that holds them"); the input here passes it, yet ``to_number`` makes an
    item ``inf`` that is stored and shown: GET /workflows/{id} answers a body with
    ``Infinity`` in it, which no strict JSON parser (a browser's JSON.parse) reads."""
    workflow_id = flow.start("NumbersMap", {"values": ["1.5e999", "2"]})
    flow.wait(workflow_id, timeout_s=30)
    result = client.simulate_get(f"/workflows/{workflow_id}")
    assert result.status_code == 200
    strict_json(result.text)


def test_the_workflow_view_of_a_map_over_a_literal_does_not_fail(flow, client):
    """An item holding a lone surrogate (from a JSON literal in ``map.over``) is stored,
    and then every GET /workflows/{id} of that workflow is a 500: Falcon cannot encode
    the item as UTF-8 ("the reply that echoes them cannot be encoded", strict_json)."""
    workflow_id = flow.start("LiteralMap", {})
    flow.wait(workflow_id, timeout_s=30)
    result = client.simulate_get(f"/workflows/{workflow_id}")
    assert result.status_code < 500, result.text
    result = client.simulate_get(f"/workflows/{workflow_id}/activities")
    assert result.status_code < 500, result.text


def test_a_maps_output_is_bounded_by_the_payload_limit(flow):
    """ "Input and outputs are bounded by FLOW_MAX_PAYLOAD_BYTES: a larger output fails
    its attempt permanently, naming the limit." A map's output, the list of its items'
    outputs, is never checked: 4 items of 600 bytes each give a 2.4 KB output under a
    1 KB limit, stored on the map and the workflow and handed to every later activity
    (10,000 items of 256 KiB: 2.5 GB in each later attempt message)."""
    workflow_id = flow.start("BigOutputsMap", {"items": [1, 2, 3, 4]})
    state = flow.wait(workflow_id, timeout_s=30).state
    each = state.definition_activities[0]
    size = len(json.dumps(each.output))
    assert size <= PAYLOAD_LIMIT or each.status == "Failed", (
        f"the map {each.status} with a {size}-byte output over the {PAYLOAD_LIMIT}-byte limit"
    )
    if each.status == "Failed":
        assert "FLOW_MAX_PAYLOAD_BYTES" in (each.error or "")
