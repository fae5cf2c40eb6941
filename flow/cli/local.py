"""``flow validate``, ``flow migrate`` and ``flow prune``: against files and the database, no API."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import peewee

from flow.cli.app import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    err,
    fail,
    load_settings,
    main,
    out,
    print_json,
    redact,
)
from flow.core import strict_json
from flow.core.kinds.child import cycle_problems, references
from flow.core.kinds.on_failure import unknown_handler
from flow.core.saga import handler_workflow
from flow.errors import ConfigurationError, DefinitionError, FlowError, StoreUnavailable

if TYPE_CHECKING:
    from flow.persistence.store import Store
    from flow.settings import Settings


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check definition files; print each error with its JSON path."""
    from activities.discovery import discover
    from flow.service import catalog

    settings = load_settings(embedded=True)
    try:
        classes = discover(settings.activity_packages)
    except FlowError as e:
        fail(str(e), EXIT_INVALID)
    invalid = 0
    loaded = {}
    for path in files:
        try:
            loaded[path] = catalog.load_file(path, known_activities=classes)
        except DefinitionError as e:
            invalid += 1
            for json_path, message in e.problems:
                out.print(f"[red]{path}[/] {json_path}: {message}")
    # Child workflows among the files given: one that reaches itself again is refused.
    recursive = catalog.child_problems(loaded.values())
    # Children that are not among the files: checked against the definitions registered
    # at FLOW_DATABASE_URL, as a process loading these files would check them.
    store, why_not = _registered_definitions(settings)
    bodies = {d.name: d.body for d in loaded.values()}

    def lookup(name: str, version: int | None) -> Any:
        if version is None and name in bodies:
            return bodies[name]
        found = store.definition(name, version) if store is not None else None
        return found[1] if found else None

    for path, d in loaded.items():
        problems = recursive.get(d.name, [])
        outside = sorted({name for name, version in _named(d.body) if not (version is None and name in bodies)})
        if not problems and (store is not None or not outside):
            # The checks PUT /definitions and the definitions directory's loading make.
            problems = cycle_problems(d.body, lookup, _step_path) + unknown_handler(d.body, lookup)
        if problems:
            invalid += 1
            for problem_path, message in problems:
                out.print(f"[red]{path}[/] {problem_path}: {message}")
            continue
        out.print(f"[green]{path}[/] ok: {d.name}, {len(d.activities)} activities")
        if outside and store is None:
            out.print(
                f"  children and failure handlers not among these files not checked ({why_not}): {', '.join(outside)}"
            )
    sys.exit(EXIT_INVALID if invalid else EXIT_OK)


def _named(body: Any) -> set[tuple[str, int | None]]:
    """The definitions (name, version) a definition runs: its children and its failure handler."""
    handler = handler_workflow(body)
    return {(name, version) for _, name, version in references(body)} | ({handler} if handler else set())


def _step_path(index: int, *keys: str) -> str:
    return strict_json.json_path(["activities", index, *keys])


def _registered_definitions(settings: Settings) -> tuple[Store | None, str]:
    """The store at ``FLOW_DATABASE_URL`` to look registered definitions up in, or None
    and why not (no such SQLite file, which is not created; not migrated; unreachable)."""
    from flow.persistence.models import bind
    from flow.persistence.store import Store

    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path != ":memory:" and not Path(path).exists():
            return None, f"no database at {redact(url)}"
    store = Store.from_url(url, pool_size=1)
    bind(store.database)
    try:
        if not store.is_migrated():
            return None, f"the database at {redact(url)} is not migrated"
    except (FlowError, peewee.DatabaseError) as e:
        return None, f"the database at {redact(url)} cannot be read: {e}"
    return store, ""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema at FLOW_DATABASE_URL (safe to run again).

    Applies every pending numbered migration (a database made by an earlier release
    keeps its data) and fixes the number of partitions (FLOW_PARTITIONS, default 64)
    when the database is new.
    """
    from flow.persistence.models import bind
    from flow.persistence.store import Store

    settings = load_settings(embedded=False)
    store = Store.from_url(settings.database_url)
    bind(store.database)
    try:
        applied = store.migrate(partitions=settings.partitions)
        partitions = store.partitions()
    except StoreUnavailable as e:
        fail(f"{e} (FLOW_DATABASE_URL={redact(settings.database_url)})", EXIT_UNAVAILABLE)
    except ConfigurationError as e:
        fail(str(e), EXIT_INVALID)
    for name in applied:
        out.print(f"applied {name}")
    out.print(f"schema is up to date at {redact(settings.database_url)} ({partitions} partitions)")


@main.command()
@click.option(
    "--older-than",
    "older_than_days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Delete workflows that ended more than this many days ago (default: FLOW_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only say how many workflows would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(older_than_days: float | None, dry_run: bool, as_json: bool) -> None:
    """Delete ended workflows older than the retention, with their activities, history,
    timers and owed messages, in batches of 500 (one short transaction each)."""
    from flow.clock import utcnow
    from flow.persistence.models import bind
    from flow.persistence.retention import BATCH
    from flow.persistence.schema import check_partitions
    from flow.persistence.store import Store

    settings = load_settings(embedded=False)
    days = older_than_days or settings.retention_days
    if not days:
        fail("FLOW_RETENTION_DAYS is 0 (keep forever): pass --older-than DAYS", EXIT_INVALID)
    store = Store.from_url(settings.database_url)
    bind(store.database)
    before = utcnow() - timedelta(days=days)
    summary = {"finished_before": before.isoformat() + "Z", "dry_run": dry_run}
    try:
        partitions = check_partitions(store.partitions(), settings.partitions)
        total = store.count_prunable(finished_before=before)
        if dry_run:
            if as_json:
                print_json({**summary, "workflows": total})
            else:
                out.print(f"{total:,} workflows ended before {summary['finished_before']} would be deleted")
            return
        t0, deleted, shown = time.monotonic(), 0, 0
        for partition in range(partitions):
            while True:
                batch = store.prune(partition, finished_before=before, limit=BATCH)
                deleted += batch
                if deleted - shown >= 10 * BATCH:  # a line per 5,000: long runs show progress
                    err.print(f"deleted {deleted:,} of {total:,}")
                    shown = deleted
                if batch < BATCH:
                    break
    except StoreUnavailable as e:
        fail(f"{e} (FLOW_DATABASE_URL={redact(settings.database_url)})", EXIT_UNAVAILABLE)
    except ConfigurationError as e:
        fail(str(e), EXIT_INVALID)
    seconds = time.monotonic() - t0
    if as_json:
        print_json({**summary, "workflows": deleted, "seconds": round(seconds, 3)})
    else:
        out.print(f"deleted {deleted:,} workflows ended before {summary['finished_before']} in {seconds:.1f} s")
