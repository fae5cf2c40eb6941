"""A rerun or a retry asked twice for the same ended run — a client that resends its
POST after a timeout, two operators at once — runs the workflow again once: each
request names the run it starts, and the engine ignores the second (the door checked
both against the same Failed run, before the engine had applied the first)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flow.core.vocabulary import HistoryType, WorkflowStatus
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

REFUSED = {
    "name": "Refused",
    "config": {"retry": {"max_attempts": 1}},
    "activities": [{"id": "echo", "name": "EchoActivity"}, {"id": "refuse", "name": "RefusingActivity"}],
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("resent"), {"Refused": REFUSED}) as running:
        yield running


def failed_workflow(flow: EmbeddedFlow) -> str:
    workflow_id = flow.start("Refused", {})
    store = flow.runtime.store
    wait_for(lambda: store.get(workflow_id).state.status is WorkflowStatus.FAILED, timeout_s=30, what="a failure")
    return workflow_id


def asked_twice(flow: EmbeddedFlow, workflow_id: str, ask, requested: HistoryType) -> None:
    """Make the request twice while the workflow is Failed on run 1, then deliver the two
    messages one after the other, the second once the first's run has ended."""
    controls = flow.runtime.service.controls
    senders = controls.senders
    held = []
    send = senders.send
    senders.send = held.append
    try:
        ask(controls, workflow_id)
        ask(controls, workflow_id)
    finally:
        senders.send = send
    assert len(held) == 2
    store = flow.runtime.store

    def handled(count: int) -> bool:
        history = store.events(workflow_id, limit=1000)
        asked = sum(1 for e in history if e["type"] == requested.value)
        return asked == count and store.get(workflow_id).state.status is WorkflowStatus.FAILED

    send(held[0])
    wait_for(lambda: handled(1), timeout_s=30, what="the first request's run to fail")
    send(held[1])
    wait_for(lambda: handled(2), timeout_s=30, what="the second request to be handled")


def test_a_rerun_asked_twice_for_one_failed_run_runs_it_again_once(flow):
    workflow_id = failed_workflow(flow)
    asked_twice(flow, workflow_id, lambda c, w: c.rerun(w, "refuse", by="ana"), HistoryType.RERUN_REQUESTED)
    assert flow.runtime.store.get(workflow_id).state.run == 2


def test_a_retry_asked_twice_for_one_failed_run_runs_it_again_once(flow):
    workflow_id = failed_workflow(flow)
    asked_twice(flow, workflow_id, lambda c, w: c.retry(w), HistoryType.RETRY_REQUESTED)
    assert flow.runtime.store.get(workflow_id).state.run == 2
