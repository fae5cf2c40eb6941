"""``flow validate`` and ``flow migrate``: against files and the database, no API."""

from __future__ import annotations

import sys

import click

from flow.cli.app import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    fail,
    load_settings,
    main,
    out,
    redact,
)
from flow.errors import ConfigurationError, DefinitionError, FlowError, StoreUnavailable


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check definition files; print each error with its JSON path."""
    from activities.discovery import discover
    from flow import catalog

    settings = load_settings(embedded=True)
    try:
        classes = discover(settings.activity_packages)
    except FlowError as e:
        fail(str(e), EXIT_INVALID)
    invalid = 0
    for path in files:
        try:
            d = catalog.load_file(path, known_activities=classes)
        except DefinitionError as e:
            invalid += 1
            for json_path, message in e.problems:
                out.print(f"[red]{path}[/] {json_path}: {message}")
            continue
        out.print(f"[green]{path}[/] ok: {d.name}, {len(d.activities)} activities")
    sys.exit(EXIT_INVALID if invalid else EXIT_OK)


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
