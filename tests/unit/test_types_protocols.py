"""Each Protocol in the product matches the classes it stands for: mypy checks every
function below (this file is in pyproject.toml's mypy ``files``, run by ./project_tests.sh),
each of which hands a real class's instance to where its Protocol is expected. The test
makes sure that every Protocol declared in flow/ and actors/ has such a check."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from tests.conftest import ROOT

if TYPE_CHECKING:
    import actors.workflow
    import flow.core.kinds.base
    import flow.engine.batches
    import flow.engine.events
    import flow.engine.schedules
    import flow.engine.transport
    import flow.service.children
    from flow.core.callback_tokens import CallbackTokens
    from flow.engine.collaborators import ActorCollaborators
    from flow.engine.rabbit import RabbitTransport
    from flow.persistence.records import Loaded, Transition
    from flow.process.inprocess import InProcessTransport
    from flow.service.batches import BatchService
    from flow.service.events import EventService
    from flow.service.schedules import ScheduleService
    from flow.service.workflows import WorkflowService


def _collaborators(real: ActorCollaborators) -> actors.workflow.Collaborators[Transition]:
    return real


def _stored(real: Loaded) -> actors.workflow.Stored:
    return real


def _committable(real: Transition) -> actors.workflow.Committable:
    return real


def _rabbit_transport(real: RabbitTransport) -> flow.engine.transport.Transport:
    return real


def _in_process_transport(real: InProcessTransport) -> flow.engine.transport.Transport:
    return real


def _schedule_starter(real: ScheduleService) -> flow.engine.schedules.ScheduleStarter:
    return real


def _batch_controls(real: BatchService) -> flow.engine.batches.BatchControls:
    return real


def _event_starter(real: EventService) -> flow.engine.events.EventStarter:
    return real


def _child_starter(real: WorkflowService) -> flow.service.children.WorkflowService:
    return real


def _tokens(real: CallbackTokens) -> flow.core.kinds.base.Tokens:
    return real


#: Each Protocol (module.name) and the functions above that check it.
CHECKED = {
    "actors.workflow.Collaborators": [_collaborators],
    "actors.workflow.Stored": [_stored],
    "actors.workflow.Committable": [_committable],
    "flow.engine.transport.Transport": [_rabbit_transport, _in_process_transport],
    "flow.engine.schedules.ScheduleStarter": [_schedule_starter],
    "flow.engine.batches.BatchControls": [_batch_controls],
    "flow.engine.events.EventStarter": [_event_starter],
    "flow.service.children.WorkflowService": [_child_starter],
    "flow.core.kinds.base.Tokens": [_tokens],
}


def _is_protocol(base: ast.expr) -> bool:
    """``Protocol``, ``typing.Protocol`` or a generic one (``Protocol[T]``)."""
    if isinstance(base, ast.Subscript):
        base = base.value
    return (isinstance(base, ast.Name) and base.id == "Protocol") or (
        isinstance(base, ast.Attribute) and base.attr == "Protocol"
    )


def _protocols() -> set[str]:
    found = set()
    for package in ("flow", "actors", "api", "activities"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(_is_protocol(base) for base in node.bases):
                    found.add(f"{module}.{node.name}")
    return found


def test_every_protocol_in_the_product_is_checked_against_its_classes():
    assert set(CHECKED) == _protocols()


def test_mypy_checks_this_file():
    import tomllib

    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert "tests/unit/test_types_protocols.py" in files
