"""Preconditions of the control operations (cancel, retry, pause, resume, signal): one
refusal per case, raised by the service (``flow/service/controls.py``) as a
:class:`~flow.errors.FlowError`, answered 409 by the API with the title and text it has
always had, and reported in the same words by the Dramatiq door (which forwards the
message all the same: the engine applies a workflow's messages in their order)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dramatiq
import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

DEFINITIONS = {
    "Quick": {"name": "Quick", "activities": [{"name": "NoopActivity"}]},
    "Waiting": {"name": "Waiting", "activities": [{"id": "approval", "wait_for": "approved"}]},
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("preconditions"), DEFINITIONS) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


@pytest.fixture(scope="module")
def finished(flow) -> str:
    workflow_id = flow.start("Quick")
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"
    return workflow_id


@pytest.fixture(scope="module")
def paused(flow, client) -> str:
    workflow_id = flow.start("Waiting")
    assert client.simulate_post(f"/workflows/{workflow_id}/pause").status_code == 202
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.paused, timeout_s=30, what="the pause")
    return workflow_id


@pytest.fixture(scope="module")
def running(flow) -> str:
    workflow_id = flow.start("Waiting")
    wait_for(
        lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Waiting",
        timeout_s=30,
        what="the wait",
    )
    return workflow_id


#: (which workflow, the request, the 409's title, its description with {id} for the workflow's id)
REFUSALS = [
    (
        "finished",
        "cancel",
        "Workflow already ended",
        "workflow {id} is Finished; only a running workflow can be cancelled",
    ),
    (
        "finished",
        "signals/approved",
        "Workflow already ended",
        "workflow {id} is Finished; only a running workflow takes signals",
    ),
    (
        "finished",
        "pause",
        "Workflow cannot be paused",
        "workflow {id} is Finished",
    ),
    (
        "finished",
        "resume",
        "Workflow cannot be resumed",
        "workflow {id} is Finished",
    ),
    (
        "finished",
        "retry",
        "Workflow cannot be retried",
        "workflow {id} is Finished; only a Failed or Cancelled workflow can be retried",
    ),
    (
        "running",
        "retry",
        "Workflow cannot be retried",
        "workflow {id} is In Progress; only a Failed or Cancelled workflow can be retried",
    ),
    ("running", "resume", "Workflow cannot be resumed", "workflow {id} is not paused"),
    ("paused", "pause", "Workflow cannot be paused", "workflow {id} is paused already"),
]
IDS = [f"{which}-{path.split('/')[0]}" for which, path, *_ in REFUSALS]


@pytest.mark.parametrize(("which", "path", "title", "description"), REFUSALS, ids=IDS)
def test_the_api_answers_each_refusal_as_it_always_has(request, client, which, path, title, description):
    workflow_id = request.getfixturevalue(which)
    result = client.simulate_post(f"/workflows/{workflow_id}/{path}")
    assert result.status_code == 409
    assert result.json["title"] == title
    assert result.json["description"] == description.format(id=workflow_id)


#: The Dramatiq message each request is, on the shared engine queue.
MESSAGES = {
    "cancel": ("flow.cancel_workflow", {}),
    "signals/approved": ("flow.signal_workflow", {"name": "approved", "signal_id": "s-1"}),
    "pause": ("flow.pause_workflow", {}),
    "resume": ("flow.resume_workflow", {}),
    "retry": ("flow.retry_workflow", {}),
}


@pytest.mark.parametrize(("which", "path", "title", "description"), REFUSALS, ids=IDS)
def test_the_dramatiq_door_reports_the_same_reason_and_forwards_the_message(
    request, flow, caplog, which, path, title, description
):
    """The engine has the last word: a message forwarded behind another (a resume behind
    a pause) may find the workflow changed, so the door reports and forwards."""
    workflow_id = request.getfixturevalue(which)
    actor_name, kwargs = MESSAGES[path]
    message = dramatiq.Message(
        queue_name=flow.settings.engine_queue,
        actor_name=actor_name,
        args=(),
        kwargs={"workflow_id": workflow_id, **kwargs},
        options={},
    )
    before = len(flow.runtime.store.events(workflow_id))
    with caplog.at_level(logging.WARNING, logger="flow.service"):
        flow.runtime.service.forward(message)
    assert description.format(id=workflow_id) in caplog.text
    # Forwarded all the same: the engine records the request and its own do-nothing.
    wait_for(
        lambda: any(e["type"] == "do-nothing" for e in flow.runtime.store.events(workflow_id)[before:]),
        timeout_s=30,
        what="the engine's do-nothing",
    )


def test_the_api_accepts_what_no_precondition_refuses(flow, client, running):
    assert client.simulate_post(f"/workflows/{running}/signals/other").status_code == 202
    workflow_id = flow.start("Waiting")
    assert client.simulate_post(f"/workflows/{workflow_id}/cancel").status_code == 202
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Cancelled"
    assert client.simulate_post(f"/workflows/{workflow_id}/retry").status_code == 202
