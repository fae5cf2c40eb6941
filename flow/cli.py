"""The ``flow`` command.

Exit codes: 0 success (the workflow finished; every file valid), 1 the workflow
failed or was cancelled, 2 bad usage or an invalid definition or input, 3 the
``--timeout`` passed before the workflow ended, 4 a service (database) is unavailable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from flow.errors import DefinitionError, DefinitionNotFound, FlowError, InvalidInput, StoreUnavailable
from flow.logs import configure_logging
from flow.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def _fail(message: str, code: int) -> None:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def _settings(embedded: bool) -> Settings:
    try:
        return Settings.from_env(embedded=embedded)
    except FlowError as e:
        _fail(str(e), EXIT_INVALID)
        raise  # unreachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libero-flow")
def main() -> None:
    """Libero Flow: run JSON-defined workflows, embedded or on RabbitMQ and PostgreSQL."""


@main.command()
@click.argument("target")
@click.option("--input", "input_json", default="{}", help="The workflow's input data, a JSON object.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up waiting after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON instead of a table.")
def run(target: str, input_json: str, timeout_s: float | None, as_json: bool) -> None:
    """Run a workflow in this process, showing its progress.

    TARGET is a definition name from FLOW_DEFINITIONS_DIR (default ./workflows) or a
    path to a definition file. State goes to FLOW_DATABASE_URL (default
    sqlite:///flow.db); no broker or other service is needed.
    """
    from flow import definition as definitions
    from flow.embedded import EmbeddedFlow
    from flow.progress import activity_table, describe_event, status_text
    from flow.views import workflow_view

    settings = _settings(embedded=True)
    configure_logging(settings, default_level="WARNING")
    try:
        input_data = json.loads(input_json)
    except json.JSONDecodeError as e:
        _fail(f"--input is not valid JSON: {e.msg} (line {e.lineno} column {e.colno})", EXIT_INVALID)
    if not isinstance(input_data, dict):
        _fail("--input must be a JSON object, e.g. '{\"x\": 1}'", EXIT_INVALID)

    console = _console()
    out = Console(stderr=True, highlight=False) if as_json else console
    try:
        with EmbeddedFlow(settings) as flow:
            name = target
            if target.endswith(".json") or Path(target).is_file():
                definition = definitions.load_file(target, known_activities=flow.runtime.activity_classes)
                flow.add_definition(definition)
                name = definition.name
            workflow_id = flow.start(name, input_data)
            out.print(f"started [bold]{name}[/] [dim]{workflow_id}[/]")

            def show(event: dict[str, Any], row: Any) -> None:
                line = describe_event(event, row.state)
                if line.plain:
                    out.print(line)

            row = flow.wait(workflow_id, timeout_s=timeout_s, on_event=show)
    except DefinitionError as e:
        for path, message in e.problems:
            Console(stderr=True, highlight=False).print(f"[red]{e.source}[/] {path}: {message}")
        sys.exit(EXIT_INVALID)
    except (DefinitionNotFound, InvalidInput) as e:
        _fail(str(e), EXIT_INVALID)
    except StoreUnavailable as e:
        _fail(f"{e} (FLOW_DATABASE_URL={settings.database_url})", EXIT_UNAVAILABLE)

    state = row.state
    if as_json:
        console.print_json(json.dumps(workflow_view(row)))
    else:
        console.print(activity_table(state))
        line = status_text(state.status)
        if state.error:
            line.append(f"  {state.error}")
        console.print(line)
    if not state.status.ended:
        _fail(f"workflow {workflow_id} still {state.status} after {timeout_s} s", EXIT_TIMEOUT)
    sys.exit(EXIT_OK if state.status.value == "Finished" else EXIT_FAILED)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check definition files; print each error with its JSON path."""
    from activities.discovery import discover
    from flow import definition as definitions

    settings = _settings(embedded=True)
    try:
        classes = discover(settings.activity_packages)
    except FlowError as e:
        _fail(str(e), EXIT_INVALID)
    console = _console()
    invalid = 0
    for path in files:
        try:
            d = definitions.load_file(path, known_activities=classes)
        except DefinitionError as e:
            invalid += 1
            for json_path, message in e.problems:
                console.print(f"[red]{path}[/] {json_path}: {message}")
            continue
        console.print(f"[green]{path}[/] ok: {d.name}, {len(d.activities)} activities")
    sys.exit(EXIT_INVALID if invalid else EXIT_OK)


@main.command()
def migrate() -> None:
    """Create the database schema at FLOW_DATABASE_URL (safe to run again)."""
    from flow.store import Store

    settings = _settings(embedded=False)
    store = Store.from_url(settings.database_url)
    try:
        store.migrate()
    except StoreUnavailable as e:
        _fail(f"{e} (FLOW_DATABASE_URL={settings.database_url})", EXIT_UNAVAILABLE)
    _console().print(f"schema is up to date at {_redact(settings.database_url)}")


def _redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


if __name__ == "__main__":  # pragma: no cover
    main()
