"""The running workflows of a definition, with their steps, page by page: what a replay
(:mod:`flow.core.replay`) checks a new version against."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flow.core.state import WorkflowState
from flow.core.vocabulary import WorkflowStatus
from flow.persistence import input_filter as filters
from flow.persistence.database import unit_of_work
from flow.persistence.mapping import activity_from_row, read_workflows, workflow_columns, workflow_from_row
from flow.persistence.models import WorkflowRecord
from flow.persistence.store import Store

#: Workflows read per query: each comes with all its steps (a map's items included).
PAGE = 200


def running_workflows(
    store: Store, name: str, *, input_filter: Mapping[str, Any] | None = None, page: int = PAGE
) -> Iterator[WorkflowState]:
    """Every In Progress workflow of definition ``name`` (whose input contains
    ``input_filter``, when given), oldest first; one short unit of work per page."""
    if input_filter is not None:
        filters.check(input_filter)
    after = ""
    while True:
        with unit_of_work(store.database):
            query = WorkflowRecord.select(*workflow_columns()).where(
                (WorkflowRecord.definition_name == name)
                & (WorkflowRecord.status == WorkflowStatus.IN_PROGRESS.value)
                & (WorkflowRecord.id > after)
            )
            if input_filter is not None:
                query = query.where(filters.input_contains(store.database, input_filter))
            rows = read_workflows(store.database, query.order_by(WorkflowRecord.id).limit(page))
        for row, activities in rows:
            yield workflow_from_row(row, map(activity_from_row, activities)).state
        if len(rows) < page:
            return
        after = rows[-1][0][0]
