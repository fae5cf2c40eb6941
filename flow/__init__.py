"""Libero Flow's core: definitions, the pure decision function, persistence, settings,
broker set-up and the CLI. ``flow.actors`` is the entry point of ``dramatiq flow.actors``.

The names below are imported when first used (PEP 562), not when ``flow`` is: every
process imports this package before any of its modules, and a remote command (``flow
status``) needs neither the decision function nor the definitions' JSON Schemas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flow.core.decide import Decision, HistoryEntry, decide
    from flow.core.definition import Definition, StepDefinition
    from flow.core.policy import RetryPolicy
    from flow.core.state import ActivityState, WorkflowState
    from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
    from flow.errors import (
        ConcurrentUpdate,
        ConfigurationError,
        DefinitionError,
        DefinitionNotFound,
        FlowError,
        InvalidInput,
        InvalidJson,
        StoreUnavailable,
        UnknownActivity,
        WorkflowNotFound,
        is_retryable,
    )
    from flow.service.catalog import Catalog
    from flow.settings import Settings

__all__ = [
    # decisions
    "decide",
    "Decision",
    "HistoryEntry",
    # definitions
    "StepDefinition",
    "Catalog",
    "Definition",
    "RetryPolicy",
    # state
    "ActivityState",
    "ActivityStatus",
    "WorkflowState",
    "WorkflowStatus",
    # vocabularies
    "HistoryType",
    "Outcome",
    "TimerKind",
    # settings
    "Settings",
    # errors
    "ConcurrentUpdate",
    "ConfigurationError",
    "DefinitionError",
    "DefinitionNotFound",
    "FlowError",
    "InvalidInput",
    "InvalidJson",
    "StoreUnavailable",
    "UnknownActivity",
    "WorkflowNotFound",
    "is_retryable",
]

#: Each exported name's module.
_HOMES = {
    **dict.fromkeys(("decide", "Decision", "HistoryEntry"), "flow.core.decide"),
    **dict.fromkeys(("Definition", "StepDefinition"), "flow.core.definition"),
    "RetryPolicy": "flow.core.policy",
    **dict.fromkeys(("ActivityState", "WorkflowState"), "flow.core.state"),
    **dict.fromkeys(
        ("ActivityStatus", "HistoryType", "Outcome", "TimerKind", "WorkflowStatus"), "flow.core.vocabulary"
    ),
    "Catalog": "flow.service.catalog",
    "Settings": "flow.settings",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module(_HOMES.get(name, "flow.errors")), name)
        globals()[name] = value  # once: the next use is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
