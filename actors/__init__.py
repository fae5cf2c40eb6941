"""Pykka actors: one :class:`WorkflowActor` per running workflow, and the registry that bounds them."""

from actors.registry import WorkflowActors
from actors.workflow import WorkflowActor

__all__ = ["WorkflowActor", "WorkflowActors"]
