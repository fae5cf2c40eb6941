"""Waits and signals end to end on the embedded flow (SQLite): no door loses a signal's
payload or lets in what every other door refuses (each test failed once, before its fix)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dramatiq
import falcon.testing
import pytest

from flow.errors import InvalidInput
from flow.process.embedded import EmbeddedFlow
from tests.embedded.conftest import flow_of, strict_json

#: Small, so that a payload goes over it easily.
PAYLOAD_LIMIT = 1000

DEFINITIONS = {
    "WaitOnly": {"name": "WaitOnly", "activities": [{"id": "approval", "wait_for": "approved"}]},
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("signals"), DEFINITIONS, FLOW_MAX_PAYLOAD_BYTES=str(PAYLOAD_LIMIT)) as running:
        yield running


def _signal_message(workflow_id: str, **kwargs) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name="flow.engine",
        actor_name="flow.signal_workflow",
        args=(),
        kwargs={"workflow_id": workflow_id, "name": "approved", **kwargs},
        options={},
    )


def test_a_chunked_signal_body_delivers_its_payload(flow, client):
    """``read_json`` reads a chunked body (no Content-Length, ``wsgi.input_terminated``,
    as gunicorn serves it; tests/embedded/test_api.py sends one to POST /workflows), but
    the signal resource only reads a body when ``req.content_length`` is truthy: a
    chunked ``{"payload": ...}`` is ignored, the answer is 202, and the wait succeeds
    with ``null`` as its output: the payload is lost without a word."""
    workflow_id = flow.start("WaitOnly", {})
    body = json.dumps({"payload": {"by": "ana"}}).encode()
    environ = falcon.testing.create_environ(
        f"/workflows/{workflow_id}/signals/approved",
        method="POST",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    status: list[str] = []
    b"".join(client.app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("202")
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished"
    assert state.activities[0].output == {"by": "ana"}  # was None: the payload was dropped


@pytest.mark.parametrize(
    "payload",
    [{"score": float("nan")}, {"text": "\ud800"}, {"big": 2**70}],
    ids=["nan", "lone-surrogate", "int-beyond-64-bit"],
)
def test_a_dramatiq_signal_is_read_as_strictly_as_every_other_door(flow, client, payload):
    """The README's "Bad input": every door refuses NaN/Infinity ("browsers and strict
    clients could not read the workflow back"), lone surrogates ("no reply that holds it
    can be encoded") and integers beyond 64 bits; a Dramatiq start message goes through
    ``parse_start_request`` (``strict_json.check``). The documented Dramatiq signal
    (``flow.signal_workflow`` on the shared queue, README "Starting a workflow") goes
    through ``WorkflowService.forward``, which only measures the payload's size: the
    payload is kept, becomes the wait's output and the workflow's output, and
    GET /workflows/{id} answers a body no strict JSON parser reads (NaN), or a 500
    (the lone surrogate cannot be encoded as UTF-8)."""
    workflow_id = flow.start("WaitOnly", {})
    try:
        flow.runtime.service.forward(_signal_message(workflow_id, payload=payload))
    except InvalidInput:
        return  # refused at the door, as a start message would be
    flow.wait(workflow_id, timeout_s=30)
    result = client.simulate_get(f"/workflows/{workflow_id}")
    assert result.status_code == 200
    shown = strict_json(result.text)
    assert abs(shown["output"]["approval"].get("big", 0)) < 2**63  # other languages cannot hold it


def test_a_dramatiq_signal_with_its_own_id_is_bounded_by_the_payload_limit(flow):
    """``forward`` checks the payload's size only when the message has no ``signal_id``
    (the field the message format has, so that a sender may name its signal): with one,
    a payload of any size is kept in the inbox and becomes the wait's output, past
    FLOW_MAX_PAYLOAD_BYTES, which the README says bounds input and every output."""
    workflow_id = flow.start("WaitOnly", {})
    big = {"blob": "x" * (5 * PAYLOAD_LIMIT)}
    try:
        flow.runtime.service.forward(_signal_message(workflow_id, signal_id="mine-1", payload=big))
    except InvalidInput:
        return
    state = flow.wait(workflow_id, timeout_s=30).state
    approval = state.activities[0]
    assert approval.status != "Succeeded" or len(json.dumps(approval.output)) <= PAYLOAD_LIMIT


@pytest.mark.parametrize("name", ["approved ", "approved\n", "appro ved", "\u00e9"])
def test_a_dramatiq_signal_whose_name_no_wait_can_have_is_refused(flow, name):
    """The API answers 422 for a name that does not match NAME_PATTERN, since no
    ``wait_for`` can have it (definitions are checked against the same pattern). The
    Dramatiq door checks nothing but the workflow id: such a signal is kept in the
    inbox, where no step will ever take it, and counts against the 1,000 the workflow
    may hold; the sender learns nothing (nothing is dead-lettered)."""
    workflow_id = flow.start("WaitOnly", {})
    with pytest.raises(InvalidInput):
        flow.runtime.service.forward(_signal_message(workflow_id, name=name, payload=1))
