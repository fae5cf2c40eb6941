"""``flow replay NEW_DEFINITION.json``: check a definition against the stored history of
every running workflow of its name, straight from the database (no API, no worker:
:func:`flow.core.replay.check` is pure). Exit 0 when every one would take it over, 1
otherwise: a step for CI, against a copy of production's database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from flow.cli.app import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    fail,
    load_settings,
    main,
    out,
    print_json,
    read_json_option,
    redact,
)
from flow.errors import DefinitionError, FilterTooCostly, FlowError, StoreUnavailable


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--database", "database_url", default=None, help="The database to read (default: FLOW_DATABASE_URL).")
@click.option(
    "--filter",
    "filter_json",
    default=None,
    metavar="JSON|@FILE|-",
    help='Only the workflows whose input contains this JSON object, e.g. \'{"tenant": "acme"}\'.',
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for CI).")
def replay(file: str, database_url: str | None, filter_json: str | None, as_json: bool) -> None:
    """Would FILE, as the new version of its definition, take over every running workflow?"""
    from activities.discovery import discover
    from flow.persistence.models import bind
    from flow.persistence.store import Store
    from flow.service import catalog
    from flow.service import replay as replays

    settings = load_settings(embedded=False)
    input_filter = read_json_option(filter_json, "--filter") if filter_json is not None else None
    if input_filter is not None and not isinstance(input_filter, dict):
        fail('--filter must be a JSON object, e.g. \'{"tenant": "acme"}\'', EXIT_INVALID)
    try:
        definition = catalog.load_file(file, known_activities=discover(settings.activity_packages))
    except DefinitionError as e:
        for path, message in e.problems:
            out.print(f"[red]{file}[/] {path}: {message}")
        sys.exit(EXIT_INVALID)
    except FlowError as e:
        fail(str(e), EXIT_INVALID)
    url = database_url or settings.database_url
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[-1]).exists():  # never create one
        fail(f"no database at {redact(url)}", EXIT_UNAVAILABLE)
    store = Store.from_url(url, pool_size=1)
    bind(store.database)
    try:
        _check_children(store, definition.body, file)
        found = replays.report(store, definition, input_filter=input_filter)
    except FilterTooCostly as e:
        fail(str(e), EXIT_INVALID)
    except StoreUnavailable as e:
        fail(f"{e} (database {redact(url)})", EXIT_UNAVAILABLE)
    if as_json:
        print_json(found)
    else:
        _print(found)
    sys.exit(EXIT_FAILED if found["incompatible"] else EXIT_OK)


def _check_children(store: Any, body: Any, file: str) -> None:
    """Exit 2 with each problem when ``body``'s children or failure handler workflow are not
    registered in ``store`` or reach it again: what ``PUT /definitions`` would refuse, a
    report would otherwise pass (the checks ``flow validate`` makes)."""
    from flow.cli.local import _step_path
    from flow.core.kinds.child import cycle_problems
    from flow.core.kinds.on_failure import unknown_handler

    def lookup(name: str, version: int | None) -> Any:
        if version is None and name == body["name"]:
            return body
        found = store.definition(name, version)
        return found[1] if found else None

    problems = cycle_problems(body, lookup, _step_path) + unknown_handler(body, lookup)
    for path, message in problems:
        out.print(f"[red]{file}[/] {path}: {message}")
    if problems:
        sys.exit(EXIT_INVALID)


def _print(found: dict[str, Any]) -> None:
    """The report as a table of the incompatible workflows, and a summary line."""
    broken = [v for v in found["verdicts"] if not v["compatible"]]
    if broken:
        table = Table()
        for column in ("workflow", "step", "change", "why"):
            table.add_column(column)
        for verdict in broken:
            for d in verdict["divergences"]:
                table.add_row(verdict["workflow_id"], d["step"], d["change"], d["reason"])
        out.print(table)
    colour = "red" if found["incompatible"] else "green"
    out.print(
        f"[{colour}]{found['definition']}: {found['compatible']} of {found['workflows']} running workflows "
        f"compatible, {found['incompatible']} not[/]"
    )
