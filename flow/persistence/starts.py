"""What the starting side writes: definitions (new versions) and new workflows.

A workflow is created in one statement on PostgreSQL (the workflow and its
activities; ``ON CONFLICT`` for an id or idempotency key that exists), its state built
in memory rather than read back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import peewee

from flow.clock import utcnow
from flow.core import workflow_limit
from flow.core.attributes import Typed
from flow.core.definition import Definition
from flow.core.lineage import ParentLink
from flow.core.namespaces import DEFAULT
from flow.core.priority import DEFAULT_PRIORITY
from flow.core.state import ActivityStatus, WorkflowState, WorkflowStatus
from flow.errors import IdempotencyConflict, InvalidInput, StoreUnavailable
from flow.persistence import attributes as stored_attributes
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.mapping import StoredWorkflow, graph_column
from flow.persistence.models import ActivityRecord, DefinitionRecord, WorkflowRecord


class Starts:
    """The starting side's writes (a part of :class:`flow.persistence.store.Store`)."""

    database: peewee.Database

    def _find(self, where: Any) -> StoredWorkflow | None:  # provided by Queries
        raise NotImplementedError

    def register_definition(self, definition: Definition, *, namespace: str = DEFAULT) -> tuple[int, bool]:
        """Store ``definition`` as a new version unless that body was registered before;
        return ``(version, created)``. A body whose version was deleted comes back under
        its old number (a number names one body for good)."""
        with unit_of_work(self.database):
            for _ in range(5):
                existing = DefinitionRecord.get_or_none(
                    (DefinitionRecord.name == definition.name) & (DefinitionRecord.digest == definition.digest)
                )
                if existing is not None and existing.deleted_at is not None:
                    with write(self.database):
                        DefinitionRecord.update(deleted_at=None, body=definition.body).where(
                            DefinitionRecord.id == existing.id
                        ).execute()
                    return existing.version, True
                if existing is not None:
                    return existing.version, False
                latest = (
                    DefinitionRecord.select(peewee.fn.MAX(DefinitionRecord.version))
                    .where(DefinitionRecord.name == definition.name)
                    .scalar()
                    or 0
                )
                try:
                    with write(self.database):
                        DefinitionRecord.create(
                            name=definition.name,
                            namespace=namespace,
                            version=latest + 1,
                            digest=definition.digest,
                            body=definition.body,
                            created_at=utcnow(),
                        )
                    return latest + 1, True
                except peewee.IntegrityError:
                    continue  # another process registered concurrently: read again
            raise StoreUnavailable(f"could not register definition {definition.name}: too much contention")

    def create_workflow(
        self,
        definition: Definition,
        definition_version: int,
        input_data: Mapping[str, Any],
        *,
        partition_of: Callable[[str], int],
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        parent: ParentLink | None = None,
        child_versions: Mapping[str, int] | None = None,
        priority: int = DEFAULT_PRIORITY,
        attributes: Mapping[str, Typed] | None = None,
        namespace: str = DEFAULT,
    ) -> tuple[WorkflowState, bool]:
        """Create a workflow and its pending activities; ``(state, created)``.

        ``parent``: the parent activity a child workflow reports to;
        ``child_versions``: the version its own children without ``version`` will run;
        ``priority``: 1 (first) to 5 (last), as the start request said;
        ``attributes``: its search attributes' first values (checked against the definition);
        ``namespace``: its definition's.

        With an id or idempotency key that already exists, nothing is written and the
        existing workflow is returned with ``created=False`` — unless it was started
        with another definition or input, which raises :class:`IdempotencyConflict`.
        The unique indexes make that hold under concurrent starts.
        """
        workflow_id = workflow_id or str(uuid.uuid4())
        now = utcnow()
        claim = None
        if definition.limit is not None:
            made = workflow_limit.claim(
                definition.limit, input_data, priority, strategy=workflow_limit.strategy_of(definition.body)
            )
            if isinstance(made, str):
                raise InvalidInput("$.input_data", f"the definition's {made}")
            claim = made
        state = WorkflowState(
            id=workflow_id,
            name=definition.name,
            definition_version=definition_version,
            status=WorkflowStatus.IN_PROGRESS,
            input_data=dict(input_data),
            config=dict(definition.config),
            activities=definition.initial_activities(child_versions),
            created_at=now,
            parent=parent,
            priority=priority,
            claim=claim,
        )
        workflow = {
            "id": workflow_id,
            "definition_name": definition.name,
            "definition_version": definition_version,
            "namespace": namespace,
            "partition": partition_of(workflow_id),
            "status": WorkflowStatus.IN_PROGRESS.value,
            "started": False,
            "run": 1,
            "input_data": json.dumps(state.input_data, separators=(",", ":")),
            "config": json.dumps(state.config, separators=(",", ":")),
            "idempotency_key": idempotency_key,
            "created_at": now,
            "updated_at": now,
            "version": 0,
            "parent_id": parent.workflow_id if parent else None,
            "parent_position": parent.position if parent else None,
            "parent_attempt": parent.attempt if parent else None,
            "priority": priority,
            "limit_name": claim.limit if claim else None,
            "limit_key": claim.key if claim else None,
            "limit_max": claim.max if claim else None,
            "limit_strategy": claim.strategy if claim else None,
        }
        activities = [
            (
                a.position,
                a.name,
                a.independent,
                a.required,
                json.dumps(a.config, separators=(",", ":")),
                json.dumps(a.retry.to_dict(), separators=(",", ":")),
                json.dumps(a.timeouts.to_dict(), separators=(",", ":")),
                graph_column(a),
            )
            for a in state.activities
        ]
        attribute_rows = stored_attributes.rows(workflow_id, attributes or {})
        with unit_of_work(self.database):
            created = (
                self._insert_postgres(workflow, activities, attribute_rows)
                if is_postgres(self.database)
                else self._insert(workflow, activities, attribute_rows)
            )
            if created:
                return state, True
            existing = self._find_existing(workflow_id, idempotency_key, definition.name, input_data)
            if existing is None:  # pragma: no cover - a conflict on a row that then vanished
                raise StoreUnavailable(f"workflow {workflow_id} could not be created; try again")
            return existing, False

    def _insert_postgres(
        self, workflow: dict[str, Any], activities: list[tuple[Any, ...]], attributes: list[stored_attributes.Row]
    ) -> bool:
        """The workflow, its activities and its attributes in one statement (one round
        trip); False when its id or idempotency key exists already."""
        columns = ", ".join(workflow)
        placeholders = ", ".join(["%s"] * len(workflow))
        sql = (
            f"WITH w AS (INSERT INTO workflows ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING "
            "RETURNING id), "
            "a AS (INSERT INTO activities (workflow_id, position, name, independent, required, config, retry, "
            "timeouts, graph, status, attempt, attempts_before) "
            "SELECT w.id, a.position, a.name, a.independent, a.required, a.config, a.retry, a.timeouts, a.graph, "
            "'Pending', 0, 0 FROM w, unnest(%s::int[], %s::text[], %s::bool[], %s::bool[], %s::text[], %s::text[], "
            "%s::text[], %s::text[]) AS a(position, name, independent, required, config, retry, timeouts, graph))"
        )
        params = [*workflow.values(), *(list(column) for column in zip(*activities, strict=True))]
        if attributes:
            arrays = ", ".join(f"%s::{kind}" for kind in stored_attributes.ARRAY_TYPES)
            sql += (
                ", at AS (INSERT INTO workflow_attributes (workflow_id, name, str_value, num_value, bool_value, "
                f"time_value) SELECT w.id, x.name, x.s, x.n, x.b, x.t FROM w, unnest({arrays}) "
                "AS x(workflow_id, name, s, n, b, t))"
            )
            params.extend(stored_attributes.arrays(attributes))
        sql += " SELECT id FROM w"
        return self.database.execute_sql(sql, params).fetchone() is not None

    def _insert(
        self, workflow: dict[str, Any], activities: list[tuple[Any, ...]], attributes: list[stored_attributes.Row]
    ) -> bool:
        try:
            with write(self.database):
                WorkflowRecord.insert(
                    **{
                        **workflow,
                        "input_data": json.loads(workflow["input_data"]),
                        "config": json.loads(workflow["config"]),
                    }
                ).execute()
                rows = [
                    {
                        "workflow": workflow["id"],
                        "position": position,
                        "name": name,
                        "independent": independent,
                        "required": required,
                        "config": json.loads(config),
                        "retry": json.loads(retry),
                        "timeouts": json.loads(timeouts),
                        "graph": graph if graph is None else json.loads(graph),
                        "status": ActivityStatus.PENDING.value,
                        "attempt": 0,
                    }
                    for position, name, independent, required, config, retry, timeouts, graph in activities
                ]
                for start in range(0, len(rows), 500):
                    ActivityRecord.insert_many(rows[start : start + 500]).execute()
                stored_attributes.write(self.database, attributes)
        except peewee.IntegrityError:
            return False  # the id or the idempotency key exists
        return True

    def _find_existing(
        self, workflow_id: str, idempotency_key: str | None, name: str, input_data: Mapping[str, Any]
    ) -> WorkflowState | None:
        """The workflow an earlier start with this id or key created, if it was the same request."""
        query = WorkflowRecord.id == workflow_id
        if idempotency_key is not None:
            query |= WorkflowRecord.idempotency_key == idempotency_key
        found = self._find(query)
        if found is None:
            return None
        state = found.state
        if state.name != name or state.input_data != dict(input_data):
            what = f"idempotency key {idempotency_key!r}" if found.idempotency_key == idempotency_key else "workflow id"
            raise IdempotencyConflict(
                f"the {what} was used for workflow {state.id} ({state.name}) with "
                + ("another definition" if state.name != name else "another input")
                + "; a repeated start must send the same name and input_data, or use a new key"
            )
        return state
