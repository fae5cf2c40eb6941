"""The ``flow`` command.

Embedded: ``flow run`` (one workflow, in this process), ``flow up`` (API, engine and
worker in this process). Local: ``flow validate``, ``flow migrate``. Remote, against
``FLOW_API_URL``: ``flow start [--wait]``, ``status``, ``list``, ``events``,
``cancel``, ``retry``, ``definitions``. Every command takes ``--json`` for scripts
where it prints data.

Exit codes: 0 success (the workflow finished; every file valid; the request was
accepted), 1 the workflow failed or was cancelled, 2 bad usage or an invalid
definition, input or setting, 3 the ``--timeout`` passed before the workflow ended,
4 a service (database, API) is unavailable, 5 the API refused the request (not found,
conflict, unauthorised).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from flow import strict_json
from flow.errors import (
    ConfigurationError,
    DefinitionError,
    DefinitionNotFound,
    FlowError,
    InvalidInput,
    InvalidJson,
    StoreUnavailable,
)
from flow.logs import configure_logging
from flow.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4, 5

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    # One line, however narrow the terminal: scripts and logs grep for it.
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def _settings(*, embedded: bool) -> Settings:
    try:
        return Settings.from_env(embedded=embedded)
    except FlowError as e:
        _fail(str(e), EXIT_INVALID)


def _input(input_json: str) -> dict[str, Any]:
    try:
        value = strict_json.loads(input_json, what="--input")
    except InvalidJson as e:
        _fail(e.message if e.path == "$" else f"--input {e.path}: {e.message}", EXIT_INVALID)
    if not isinstance(value, dict):
        _fail("--input must be a JSON object, e.g. '{\"x\": 1}'", EXIT_INVALID)
    return value


def _embedded(settings: Settings, **options: Any) -> Any:
    """The in-process flow for ``settings``; a configuration it cannot start with (an
    activity package that cannot be imported, an invalid definition in the directory)
    exits 2 with the reason, without a traceback."""
    from flow.embedded import EmbeddedFlow

    try:
        return EmbeddedFlow(settings, **options)
    except ConfigurationError as e:
        _fail(str(e), EXIT_INVALID)
    except DefinitionError as e:
        _print_definition_error(e)
        sys.exit(EXIT_INVALID)


def _print_definition_error(e: DefinitionError) -> None:
    for path, message in e.problems:
        err.print(f"[red]{e.source}[/] {path}: {message}", soft_wrap=True)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _watch(
    fetch_workflow: Callable[[], dict[str, Any]],
    fetch_events: Callable[[int], list[dict[str, Any]]],
    *,
    timeout_s: float | None,
    console: Console,
) -> dict[str, Any]:
    """Print each new history entry until the workflow ends; return its final view."""
    from flow.progress import describe_event

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = 0
    while True:
        workflow = fetch_workflow()
        for event in fetch_events(last):
            last = event["id"]
            line = describe_event(event, workflow)
            if line.plain:
                console.print(line)
        if workflow["status"] != "In Progress" or (deadline is not None and time.monotonic() > deadline):
            return workflow
        time.sleep(0.1)


def _finish(workflow: dict[str, Any], *, as_json: bool, timeout_s: float | None) -> NoReturn:
    """Print the final state and exit with the workflow's exit code."""
    from flow.progress import activity_table, status_line

    if as_json:
        _print_json(workflow)
    else:
        out.print(activity_table(workflow))
        out.print(status_line(workflow))
    if workflow["status"] == "In Progress":
        _fail(f"workflow {workflow['id']} still In Progress after {timeout_s} s", EXIT_TIMEOUT)
    sys.exit(EXIT_OK if workflow["status"] == "Finished" else EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libero-flow")
def main() -> None:
    """Libero Flow: run JSON-defined workflows, embedded or on RabbitMQ and PostgreSQL."""


# -- embedded ---------------------------------------------------------------------------


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
    from flow.views import event_view, workflow_view

    settings = _settings(embedded=True)
    configure_logging(settings, default_level="WARNING")
    input_data = _input(input_json)
    console = err if as_json else out
    try:
        with _embedded(settings) as flow:
            name = target
            if target.endswith(".json") or Path(target).is_file():
                definition = definitions.load_file(target, known_activities=flow.runtime.activity_classes)
                flow.add_definition(definition)
                name = definition.name
            workflow_id = flow.start(name, input_data)
            console.print(f"started [bold]{name}[/] [dim]{workflow_id}[/]")
            store = flow.runtime.store
            workflow = _watch(
                lambda: workflow_view(store.get(workflow_id)),
                lambda after: [event_view(e) for e in store.events(workflow_id, after_id=after)],
                timeout_s=timeout_s,
                console=console,
            )
    except DefinitionError as e:
        _print_definition_error(e)
        sys.exit(EXIT_INVALID)
    except (DefinitionNotFound, InvalidInput) as e:
        _fail(str(e), EXIT_INVALID)
    except StoreUnavailable as e:
        _fail(f"{e} (FLOW_DATABASE_URL={_redact(settings.database_url)})", EXIT_UNAVAILABLE)
    _finish(workflow, as_json=as_json, timeout_s=timeout_s)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int, help="Worker threads for engine and activities.")
def up(host: str, port: int, threads: int) -> None:
    """Serve the API with an engine and a worker in this process (embedded default).

    For trying the API on a laptop: SQLite (FLOW_DATABASE_URL) and the in-process
    broker. Stop with Ctrl-C.
    """
    from wsgiref.simple_server import make_server

    from api.app import create_app
    from flow.wsgi_server import QuietHandler, ThreadingWSGIServer

    settings = _settings(embedded=True)
    configure_logging(settings)
    with _embedded(settings, worker_threads=threads) as flow:
        app = create_app(runtime=flow.runtime)
        try:
            server = make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        except OSError as e:
            _fail(f"cannot listen on {host}:{port}: {e.strerror}", EXIT_UNAVAILABLE)
        server.max_body_bytes = settings.max_body_bytes  # chunked bodies are cut there (plus one byte)
        out.print(f"Libero Flow on [bold]http://{host}:{port}[/] (database {_redact(settings.database_url)})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            out.print("stopping")
        finally:
            server.server_close()


# -- local ------------------------------------------------------------------------------


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
    invalid = 0
    for path in files:
        try:
            d = definitions.load_file(path, known_activities=classes)
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
    from flow.store import Store

    settings = _settings(embedded=False)
    store = Store.from_url(settings.database_url)
    bind(store.database)
    try:
        applied = store.migrate(partitions=settings.partitions)
        partitions = store.partitions()
    except StoreUnavailable as e:
        _fail(f"{e} (FLOW_DATABASE_URL={_redact(settings.database_url)})", EXIT_UNAVAILABLE)
    except ConfigurationError as e:
        _fail(str(e), EXIT_INVALID)
    for name in applied:
        out.print(f"applied {name}")
    out.print(f"schema is up to date at {_redact(settings.database_url)} ({partitions} partitions)")


# -- remote -----------------------------------------------------------------------------


def _api() -> Any:
    from flow.client import ApiClient

    settings = _settings(embedded=False)
    return ApiClient(settings.api_url, token=settings.api_token)


def _call(fn: Callable[[], Any]) -> Any:
    """Run an API call; turn its errors into a message and an exit code."""
    from flow.client import ApiError

    try:
        return fn()
    except ApiError as e:
        if e.status == 0 or e.status >= 500:
            _fail(str(e), EXIT_UNAVAILABLE)
        if e.status in (400, 413, 415, 422):
            _fail(str(e), EXIT_INVALID)
        _fail(str(e), EXIT_REFUSED)


@main.command()
@click.argument("name")
@click.option("--input", "input_json", default="{}", help="The workflow's input data, a JSON object.")
@click.option("--idempotency-key", default=None, help="A second start with the same key returns the first workflow.")
@click.option("--wait", is_flag=True, help="Show progress until the workflow ends; exit with its outcome.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="With --wait: give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(
    name: str, input_json: str, idempotency_key: str | None, wait: bool, timeout_s: float | None, as_json: bool
) -> None:
    """Start a workflow through the API (FLOW_API_URL)."""
    api = _api()
    body: dict[str, Any] = {"name": name, "input_data": _input(input_json)}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    workflow = _call(lambda: api.request("POST", "/workflows", body=body))
    if not wait:
        if as_json:
            _print_json(workflow)
        else:
            out.print(f"started [bold]{workflow['name']}[/] {workflow['id']}")
        return
    console = err if as_json else out
    console.print(f"started [bold]{workflow['name']}[/] [dim]{workflow['id']}[/]")
    path = f"/workflows/{workflow['id']}"
    final = _watch(
        lambda: _call(lambda: api.get(path)),
        lambda after: _call(lambda: api.get(f"{path}/events", after=after, limit=500))["items"],
        timeout_s=timeout_s,
        console=console,
    )
    _finish(final, as_json=as_json, timeout_s=timeout_s)


@main.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(workflow_id: str, as_json: bool) -> None:
    """Show a workflow and its activities."""
    from flow.progress import activity_table, status_line

    workflow = _call(lambda: _api().get(f"/workflows/{workflow_id}"))
    if as_json:
        _print_json(workflow)
        return
    out.print(activity_table(workflow))
    out.print(status_line(workflow))


@main.command(name="list")
@click.option("--status", "status_", default=None, help="In Progress, Finished, Failed or Cancelled.")
@click.option("--name", default=None, help="Only workflows of this definition.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(status_: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """List workflows, newest first."""
    page = _call(lambda: _api().get("/workflows", status=status_, name=name, limit=limit))
    if as_json:
        _print_json(page)
        return
    table = Table()
    for column in ("id", "name", "status", "created", "finished"):
        table.add_column(column)
    for w in page["items"]:
        table.add_row(w["id"], w["name"], w["status"], w["created_at"] or "", w["finished_at"] or "")
    out.print(table)


@main.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events(workflow_id: str, as_json: bool) -> None:
    """Show a workflow's event history."""
    from flow.progress import describe_event

    api = _api()
    workflow = _call(lambda: api.get(f"/workflows/{workflow_id}"))
    items, after = [], 0
    while True:
        page = _call(lambda after=after: api.get(f"/workflows/{workflow_id}/events", after=after, limit=500))
        items += page["items"]
        if not page["next"]:
            break
        after = page["next"]
    if as_json:
        _print_json(items)
        return
    for event in items:
        line = describe_event(event, workflow)
        out.print(line if line.plain else f"[dim]{event['occurred_at'][11:23]}  {event['type']}[/]")


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default=None, help="Recorded with the cancellation.")
def cancel(workflow_id: str, reason: str | None) -> None:
    """Cancel a running workflow."""
    body = {"reason": reason} if reason else None
    _call(lambda: _api().request("POST", f"/workflows/{workflow_id}/cancel", body=body))
    out.print(f"cancelling {workflow_id}")


@main.command()
@click.argument("workflow_id")
def retry(workflow_id: str) -> None:
    """Run a failed or cancelled workflow again from where it stopped."""
    _call(lambda: _api().request("POST", f"/workflows/{workflow_id}/retry"))
    out.print(f"retrying {workflow_id}")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def definitions(name: str | None, as_json: bool) -> None:
    """List the registered definitions, or show one."""
    api = _api()
    if name:
        shown = _call(lambda: api.get(f"/definitions/{name}"))
        if as_json:
            _print_json(shown)
            return
        out.print(f"[bold]{shown['name']}[/] version {shown['version']} ({len(shown['versions'])} versions)")
        out.print_json(json.dumps(shown["definition"]))
        return
    page = _call(lambda: api.get("/definitions"))
    if as_json:
        _print_json(page)
        return
    table = Table()
    for column in ("name", "version", "activities", "registered"):
        table.add_column(column)
    for d in page["items"]:
        table.add_row(d["name"], str(d["version"]), str(d["activities"]), d["created_at"])
    out.print(table)


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
