"""The preconditions of the requests about a workflow: one predicate each in
flow/service/checks.py, raised as FlowErrors, answered 409 by api/errors.py alone."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from flow.core.lineage import ParentLink
from flow.core.state import WorkflowState
from flow.core.vocabulary import WorkflowStatus
from flow.errors import PauseRefused, ResumeRefused, RetryRefused, WorkflowEnded
from flow.service import checks
from flow.service.controls import CONTROL_MESSAGES, refusal_of
from flow.wire import messages

ROOT = Path(__file__).resolve().parents[2]
P = WorkflowStatus

RUNNING = WorkflowState(
    id="w-1",
    name="W",
    definition_version=1,
    status=P.IN_PROGRESS,
    input_data={},
    config={},
    activities=(),
    created_at=datetime(2026, 1, 1),
    started=True,
)


def test_no_resource_raises_an_http_error_for_a_precondition():
    """The API's resources raise FlowErrors; only api/errors.py turns a refusal into 409."""
    found = []
    for path in sorted((ROOT / "api" / "resources").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in {"HTTPConflict", "HTTPGone", "HTTP_409", "HTTP_410"}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []


@pytest.mark.parametrize(
    ("state", "refusal", "error", "text"),
    [
        (RUNNING, checks.cancel_refusal, None, None),
        (replace(RUNNING, status=P.FAILED), checks.cancel_refusal, WorkflowEnded, "w-1 is Failed; only a running"),
        (replace(RUNNING, status=P.CANCELLED), checks.signal_refusal, WorkflowEnded, "only a running workflow takes"),
        (RUNNING, checks.signal_refusal, None, None),
        (RUNNING, checks.pause_refusal, None, None),
        (replace(RUNNING, paused=True), checks.pause_refusal, PauseRefused, "workflow w-1 is paused already"),
        (replace(RUNNING, status=P.FINISHED), checks.pause_refusal, PauseRefused, "workflow w-1 is Finished"),
        (replace(RUNNING, paused=True), checks.resume_refusal, None, None),
        (RUNNING, checks.resume_refusal, ResumeRefused, "workflow w-1 is not paused"),
        (replace(RUNNING, status=P.FAILED), checks.resume_refusal, ResumeRefused, "workflow w-1 is Failed"),
        (replace(RUNNING, status=P.FAILED), checks.retry_refusal, None, None),
        (replace(RUNNING, status=P.CANCELLED), checks.retry_refusal, None, None),
        (RUNNING, checks.retry_refusal, RetryRefused, "In Progress; only a Failed or Cancelled workflow"),
        (replace(RUNNING, status=P.FINISHED), checks.retry_refusal, RetryRefused, "is Finished; only a Failed"),
        (
            replace(RUNNING, status=P.FAILED, parent=ParentLink("p-1", 0, 1)),
            checks.retry_refusal,
            RetryRefused,
            "w-1 is a child of p-1: retry its parent",
        ),
    ],
)
def test_each_precondition_refuses_with_its_error_and_reason(state, refusal, error, text):
    found = refusal(state)
    if error is None:
        assert found is None
    else:
        assert type(found) is error and text in str(found) and found.workflow_id == "w-1"


def test_a_parents_retry_of_its_child_is_not_refused_for_being_a_childs():
    child = replace(RUNNING, status=P.FAILED, parent=ParentLink("p-1", 0, 1))
    assert checks.retry_refusal(child, run=2) is None
    assert refusal_of(messages.RETRY_WORKFLOW, child, {"run": 2}) is None
    assert isinstance(refusal_of(messages.RETRY_WORKFLOW, child, {}), RetryRefused)


def test_the_dramatiq_door_checks_the_control_messages_only():
    ended = replace(RUNNING, status=P.FINISHED)
    for name in CONTROL_MESSAGES:
        assert refusal_of(name, ended, {}) is not None, name
    for name in messages.ENGINE_MESSAGES.keys() - CONTROL_MESSAGES:
        assert refusal_of(name, ended, {}) is None, name
