"""A workflow's priority: 1 goes first, 5 last; a request that says nothing gets 3 (the
default of :attr:`flow.core.state.WorkflowState.priority`).

A module of its own, importing nothing, so that the client (:mod:`flow.client`) and the
``flow`` command's options read the bounds without loading the start request's schema
and validators (:mod:`flow.core.start_request`, which checks a request's priority).
"""

from __future__ import annotations

FIRST_PRIORITY, DEFAULT_PRIORITY, LAST_PRIORITY = 1, 3, 5
