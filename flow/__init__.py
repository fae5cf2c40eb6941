"""Libero Flow's core: definitions, the pure decision function, persistence, settings,
broker set-up and the CLI. ``flow.actors`` is the entry point of ``dramatiq flow.actors``.
"""

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
