"""Libero Flow's core: definitions, the pure decision function, persistence, settings,
broker set-up and the CLI. ``flow.actors`` is the entry point of ``dramatiq flow.actors``.
"""

from flow.decide import Decision, HistoryEntry, decide
from flow.definition import ActivitySpec, Catalog, Definition
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
from flow.policy import RetryPolicy
from flow.settings import Settings
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

__all__ = [
    # decisions
    "decide",
    "Decision",
    "HistoryEntry",
    # definitions
    "ActivitySpec",
    "Catalog",
    "Definition",
    "RetryPolicy",
    # state
    "ActivityState",
    "ActivityStatus",
    "WorkflowState",
    "WorkflowStatus",
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
