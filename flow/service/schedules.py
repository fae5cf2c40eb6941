"""Cron schedules, the starting side: create, change, pause, delete and trigger them,
read schedule files, start a tick's workflow for the engine, and the JSON view of a
schedule that the API, the CLI and the web page show.

Schedule files live in ``<FLOW_DEFINITIONS_DIR>/schedules/*.json``, one schedule a
file, with the body of ``PUT /schedules/{name}`` (its ``name`` defaults to the file's
name without ``.json``). A file is applied when it is new or changed since it was last
applied (its SHA-256 is stored with the schedule), by the engines when they start and
by the API on its first schedule request: a change made through the API (a pause, say)
lasts until the file itself changes, as a definition file's new version does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, cast

from flow.clock import utcnow
from flow.core import strict_json
from flow.core.attributes import check_declared
from flow.core.namespaces import DEFAULT
from flow.core.partitions import partition_of
from flow.core.schedules import ScheduleSpec, check_name, parse_schedule
from flow.core.state import WorkflowState
from flow.core.timestamps import iso
from flow.errors import DefinitionNotFound, FlowError, IdempotencyConflict, InvalidInput, ScheduleNotFound
from flow.persistence.schedules import ScheduleTable, StoredSchedule
from flow.service.workflows import WorkflowService

logger = logging.getLogger(__name__)

#: The folder of the definitions directory that holds schedule files.
SCHEDULES_FOLDER = "schedules"


class ScheduleService:
    """The schedules of one process (its API, its engine)."""

    def __init__(self, service: WorkflowService) -> None:
        self.service = service
        self.settings = service.settings
        self.table = ScheduleTable(service.store.database)
        self._lock = threading.Lock()
        self._synced = False

    def __repr__(self) -> str:
        return f"<ScheduleService {self.table!r}>"

    @property
    def directory(self) -> Path:
        return Path(self.settings.definitions_dir) / SCHEDULES_FOLDER

    # -- requests ----------------------------------------------------------------------------

    def put(
        self, name: str, body: Any, *, file_digest: str | None = None, namespace: str = DEFAULT
    ) -> tuple[StoredSchedule, bool]:
        """Validate ``body`` and create or replace the schedule ``name`` of ``namespace``
        (its workflow must be a definition of that namespace); ``(stored, created)``."""
        spec = parse_schedule(body, name=name)
        try:
            definition, _ = self.service.definitions.get(spec.workflow, namespace=namespace)
        except DefinitionNotFound as e:
            raise InvalidInput("$.workflow", str(e)) from e
        check_declared(definition.attributes, spec.attributes, path="$.attributes")
        size = len(json.dumps(dict(spec.input_data)))
        if size > self.settings.max_payload_bytes:
            raise InvalidInput(
                "$.input_data", f"is {size} bytes of JSON, over the limit of {self.settings.max_payload_bytes}"
            )
        partition = partition_of(name, self.service.partitions)
        return self.table.put(spec, partition=partition, now=utcnow(), file_digest=file_digest, namespace=namespace)

    def get(self, name: str) -> StoredSchedule:
        check_name(name)
        self.sync_files()
        found = self.table.get(name)
        if found is None:
            raise ScheduleNotFound(name)
        return found

    def list(
        self, *, after: str | None = None, limit: int | None = None, namespace: str | None = None
    ) -> list[StoredSchedule]:
        """A page of schedules by name (see :meth:`ScheduleTable.list`)."""
        self.sync_files()
        return self.table.list(after=after, limit=limit, namespace=namespace)

    def delete(self, name: str) -> None:
        """Delete a schedule (the workflows it started stay)."""
        check_name(name)
        if not self.table.delete(name):
            raise ScheduleNotFound(name)

    def set_paused(self, name: str, paused: bool) -> StoredSchedule:
        """Pause or resume: a resumed schedule ticks from now on (no catch-up of the pause)."""
        found = self.get(name)
        if found.spec.paused == paused:
            return found
        body = {**found.spec.to_dict(), "paused": paused}
        stored, _ = self.table.put(
            parse_schedule(body, name=name), partition=found.partition, now=utcnow(), file_digest=found.file_digest
        )
        return stored

    def trigger(self, name: str) -> WorkflowState:
        """Start the schedule's workflow now, whatever its cron expression, pause or
        overlap rule say; it becomes the schedule's latest run."""
        found = self.get(name)
        spec = found.spec
        state, _ = self.service.start(
            spec.workflow, dict(spec.input_data), priority=spec.priority, attributes=spec.attributes
        )
        self.table.record_trigger(name, state.id, now=utcnow())
        return state

    # -- the engine's side --------------------------------------------------------------------

    def start_tick(self, spec: ScheduleSpec, workflow_id: str) -> None:
        """Start the workflow of a tick, or find the one an earlier start of it made."""
        try:
            self.service.start(
                spec.workflow,
                dict(spec.input_data),
                workflow_id=workflow_id,
                priority=spec.priority,
                attributes=spec.attributes,
            )
        except IdempotencyConflict:
            pass  # started before the schedule's input changed: the tick has its workflow

    def sync_files(self) -> None:
        """Apply the new and changed schedule files (see the module docstring), once per
        process; an invalid file is logged and left out, the others are applied. A
        schedule that came from a file that no file names any more is deleted."""
        with self._lock:
            if self._synced:
                return
            claimed: set[str] = set()
            if self.directory.is_dir():
                self.service.sync_definitions()  # a schedule file may name a definition file
                for path in sorted(self.directory.glob("*.json")):
                    self._apply(path, claimed)
            if self.directory.parent.is_dir():
                # Only when the definitions directory is there: a process started without
                # it (a typo in FLOW_DEFINITIONS_DIR) must not delete every file's schedule.
                self._remove_orphans(claimed)
            self._synced = True

    def _remove_orphans(self, claimed: set[str]) -> None:
        for stored in self.table.list():
            if stored.file_digest is not None and stored.name not in claimed and self.table.delete(stored.name):
                logger.info(
                    "schedule %s removed: no file in %s names it any more (the workflows it started stay)",
                    stored.name,
                    self.directory,
                )

    def _apply(self, path: Path, claimed: set[str]) -> None:
        # The stem, and the body's name when it can be read, are claimed even when the
        # file is invalid: a file being edited leaves its schedule as it was.
        claimed.add(path.stem)
        try:
            check_name(path.stem)
            raw = path.read_bytes()
            body = strict_json.loads(raw, what=str(path))
            name = cast(str, body.get("name", path.stem)) if isinstance(body, dict) else path.stem
            if isinstance(name, str):
                claimed.add(name)
            digest = hashlib.sha256(raw).hexdigest()
            found = self.table.get(name)
            if found is not None and found.file_digest == digest:
                return
            self.put(name, body, file_digest=digest)
            logger.info("schedule %s %s from %s", name, "updated" if found else "created", path)
        except (OSError, FlowError) as e:
            if getattr(e, "retryable", False):
                raise
            logger.error("schedule file %s left out: %s", path, e)


def schedule_view(stored: StoredSchedule, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A schedule as the API shows it; ``runs``: its recent runs, newest first."""
    return {
        **stored.spec.to_dict(),
        "source": "file" if stored.file_digest else "api",
        "next_run_at": None if stored.spec.paused else iso(stored.next_tick_at),
        "last_tick_at": iso(stored.last_tick_at),
        "last_fired_at": iso(stored.last_fired_at),
        "last_workflow_id": stored.last_workflow_id,
        "buffered_tick_at": iso(stored.buffered_tick_at),
        "fired": stored.fired,
        "skipped": stored.skipped,
        "last_skipped_at": iso(stored.last_skipped_at),
        "last_error": stored.last_error,
        "created_at": iso(stored.created_at),
        "updated_at": iso(stored.updated_at),
        "recent_runs": [
            {
                "tick_at": iso(run["tick_at"]),
                "workflow_id": run["workflow_id"],
                "trigger": run["trigger"],
                "status": run.get("status"),
                "finished_at": iso(run.get("finished_at")),
            }
            for run in runs
        ],
    }


__all__ = ["SCHEDULES_FOLDER", "ScheduleService", "schedule_view"]
