"""The remote commands, against the API at ``FLOW_API_URL``: ``flow start``, ``status``,
``list``, ``events``, ``cancel``, ``retry``, ``rerun``, ``delete``, ``definitions``."""

from __future__ import annotations

import json
import shlex
from functools import partial
from typing import Any

import click
from rich.table import Table

from flow.cli.app import (
    EXIT_INVALID,
    api_client,
    attribute_condition,
    call_api,
    err,
    fail,
    finish,
    input_option,
    main,
    out,
    print_json,
    priority_option,
    read_input,
    read_json_option,
    watch,
    workflow_filter_options,
)
from flow.client.transport import segment as _segment
from flow.core.vocabulary import HistoryType

#: Workflows per page of ``flow list``.
DEFAULT_LIST_LIMIT = 20


@main.command()
@click.argument("name")
@input_option
@click.option("--idempotency-key", default=None, help="A second start with the same key returns the first workflow.")
@priority_option
@click.option(
    "--attributes",
    "attributes_json",
    default=None,
    help='Its search attributes, a JSON object (inline, @FILE or -): \'{"customer": "acme", "amount": 120.5}\'.',
)
@click.option("--wait", is_flag=True, help="Show progress until the workflow ends; exit with its outcome.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="With --wait: give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(
    name: str,
    input_json: str,
    idempotency_key: str | None,
    priority: int | None,
    attributes_json: str | None,
    wait: bool,
    timeout_s: float | None,
    as_json: bool,
) -> None:
    """Start a workflow through the API (FLOW_API_URL)."""
    api = api_client()
    input_data = read_input(input_json)
    attributes = None if attributes_json is None else read_json_option(attributes_json, "--attributes")
    if attributes is not None and not isinstance(attributes, dict):
        fail('--attributes must be a JSON object, e.g. \'{"customer": "acme"}\'', EXIT_INVALID)
    started = call_api(
        lambda: api.start(name, input_data, idempotency_key=idempotency_key, priority=priority, attributes=attributes)
    )
    workflow = dict(started.raw)
    if not wait:
        if as_json:
            print_json(workflow)
        else:
            out.print(f"started [bold]{workflow['name']}[/] {workflow['id']}")
        return
    console = err if as_json else out
    console.print(f"started [bold]{workflow['name']}[/] [dim]{workflow['id']}[/]")
    final = watch(
        lambda: call_api(lambda: dict(api.get(started.id).raw)),
        lambda after: call_api(lambda: list(api.history(started.id, after=after))),
        timeout_s=timeout_s,
        console=console,
    )
    finish(final, as_json=as_json, timeout_s=timeout_s)


@main.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(workflow_id: str, as_json: bool) -> None:
    """Show a workflow and its activities."""
    from flow.cli.progress import activity_table, status_line

    workflow = dict(call_api(lambda: api_client().get(workflow_id)).raw)
    if as_json:
        print_json(workflow)
        return
    out.print(activity_table(workflow))
    out.print(status_line(workflow))


@main.command(name="list")
@workflow_filter_options
@click.option(
    "--limit", default=DEFAULT_LIST_LIMIT, show_default=True, type=click.IntRange(1, 500), help="Workflows per page."
)
@click.option("--cursor", default=None, help="Show the page after the one that printed this cursor.")
@click.option("--all", "all_pages", is_flag=True, help="Follow the pages to the last one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(
    status_: str | None,
    name: str | None,
    input_json: str | None,
    priority: int | None,
    attrs: tuple[str, ...],
    created_after: str | None,
    created_before: str | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """List workflows, newest first, a page at a time (--cursor, --all).

    On a terminal, a table; otherwise one tab-separated line per workflow (id, name,
    status, created, finished). Ids are never shortened. When more pages follow, the
    command that shows the next one is printed on stderr.
    """
    api = api_client()
    contains = None if input_json is None else read_input(input_json)
    filters = {
        "status": status_,
        "name": name,
        "input": contains,
        "priority": priority,
        "created_after": created_after,
        "created_before": created_before,
    }
    conditions = dict(attribute_condition(text) for text in attrs)
    items: list[dict[str, Any]] = []
    while True:
        # The conditions are attr.<name>[.<op>] query parameters, sent as they are.
        page, cursor = call_api(partial(api.list_page, **filters, **conditions, limit=limit, cursor=cursor))
        items += [dict(w.raw) for w in page]
        if not (all_pages and cursor):
            break
    if as_json:
        print_json({"items": items, "next": cursor})
        return
    if out.is_terminal:
        out.print(workflow_table(items))
    else:
        for w in items:
            click.echo("\t".join((w["id"], w["name"], w["status"], w["created_at"] or "", w["finished_at"] or "")))
    if cursor:
        options = {**filters, "limit": limit if limit != DEFAULT_LIST_LIMIT else None, "cursor": cursor}
        again = " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in options.items() if v is not None)
        again += "".join(f" --attr {shlex.quote(text)}" for text in attrs)
        err.print(f"more: flow list {again}", soft_wrap=True, markup=False, highlight=False)


def workflow_table(items: list[dict[str, Any]]) -> Table:
    """A table of workflow summaries in which the id column is never cut (so it can be
    copied); the other columns wrap rather than lose text."""
    table = Table()
    table.add_column("id", no_wrap=True, min_width=max((len(w["id"]) for w in items), default=2))
    for column in ("name", "status", "priority", "created", "finished"):
        table.add_column(column, overflow="fold")
    for w in items:
        table.add_row(
            w["id"], w["name"], w["status"], str(w.get("priority", "")), w["created_at"] or "", w["finished_at"] or ""
        )
    return table


@main.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events(workflow_id: str, as_json: bool) -> None:
    """Show a workflow's event history."""
    from flow.cli.progress import Narrator, is_quiet

    api = api_client()
    workflow = dict(call_api(lambda: api.get(workflow_id)).raw)
    items = call_api(lambda: list(api.history(workflow_id)))
    if as_json:
        print_json(items)
        return
    narrator = Narrator()
    for event in items:
        if is_quiet(event) and event["type"] != HistoryType.DO_NOTHING:
            out.print(f"[dim]{event['occurred_at'][11:23]}  {event['type']}[/]")
        for line in narrator.lines(event, workflow):
            out.print(line)
    for line in narrator.heartbeats(workflow):  # not in the history: each running activity's last one
        out.print(line)


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default=None, help="Recorded with the cancellation.")
def cancel(workflow_id: str, reason: str | None) -> None:
    """Cancel a running workflow."""
    call_api(lambda: api_client().cancel(workflow_id, reason=reason))
    out.print(f"cancelling {workflow_id}")


@main.command()
@click.argument("workflow_id", required=False)
@click.argument("name", required=False)
@click.option("--data", "data", default=None, metavar="JSON|@FILE|-", help="The payload: any JSON value.")
@click.option("--key", default=None, help="Idempotency key: sending again with it delivers the signal once.")
@click.option("--token", default=None, help="A wait's callback token, instead of ID and NAME (delivers once).")
def signal(workflow_id: str | None, name: str | None, data: str | None, key: str | None, token: str | None) -> None:
    """Send signal NAME (with a JSON payload) to a running workflow, or, with --token, the
    signal of the wait whose callback token it is."""
    if (token is None) == (workflow_id is None or name is None) or (token and (workflow_id or key)):
        raise click.UsageError("give ID and NAME, or --token TOKEN alone (a token is its own idempotency key)")
    payload = None if data is None else read_json_option(data, "--data")
    if token is not None:
        by_token = call_api(lambda: api_client().signal_by_token(token, payload))
        out.print(f"sent signal {by_token.name} to {by_token.workflow_id} by its callback token")
        return
    assert workflow_id is not None and name is not None  # the usage check above
    sent = call_api(lambda: api_client().signal(workflow_id, name, payload, idempotency_key=key))
    out.print(f"sent signal {name} to {workflow_id} (signal id {sent.signal_id})")


@main.command()
@click.argument("workflow_id")
def pause(workflow_id: str) -> None:
    """Pause a running workflow: nothing new is scheduled until it resumes."""
    call_api(lambda: api_client().pause(workflow_id))
    out.print(f"pausing {workflow_id}")


@main.command()
@click.argument("workflow_id")
def resume(workflow_id: str) -> None:
    """Let a paused workflow go on."""
    call_api(lambda: api_client().resume(workflow_id))
    out.print(f"resuming {workflow_id}")


@main.command()
@click.argument("workflow_id")
def retry(workflow_id: str) -> None:
    """Run a failed or cancelled workflow again from where it stopped."""
    call_api(lambda: api_client().retry(workflow_id, timeout_s=0))  # the 202 is the answer: no wait
    out.print(f"retrying {workflow_id}")


@main.command()
@click.argument("workflow_id")
@click.option("--from", "from_step", required=True, help="The id of the step to rerun from.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Run on this definition version.")
@click.option("--input", "input_json", default=None, metavar="JSON|@FILE|-", help="The new run's input.")
def rerun(workflow_id: str, from_step: str, version: int | None, input_json: str | None) -> None:
    """Run an ended workflow again from a step: it and what depends on it run again."""
    input_data = None if input_json is None else read_input(input_json)
    call_api(  # the 202 is the answer: no wait
        lambda: api_client().rerun(workflow_id, from_step, version=version, input=input_data, by=_user(), timeout_s=0)
    )
    out.print(f"rerunning {workflow_id} from {from_step}")


def _user() -> str:
    """Who asks, for the workflow's history: ``cli.<login>`` (``cli`` when it cannot be told)."""
    import getpass
    import re

    try:
        login = re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser())[:100]
    except (KeyError, OSError):  # no login name in this environment (a container)
        return "cli"
    return f"cli.{login}" if login else "cli"


@main.command()
@click.argument("workflow_id")
def delete(workflow_id: str) -> None:
    """Delete an ended workflow with its activities, history, timers and owed messages."""
    call_api(lambda: api_client().delete(workflow_id))
    out.print(f"deleted {workflow_id}")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def definitions(name: str | None, as_json: bool) -> None:
    """List the registered definitions, or show one."""
    api = api_client()
    if name:
        shown = call_api(lambda: api.request("GET", f"/definitions/{_segment(name)}"))
        if as_json:
            print_json(shown)
            return
        out.print(f"[bold]{shown['name']}[/] version {shown['version']} ({len(shown['versions'])} versions)")
        out.print_json(json.dumps(shown["definition"]))
        return
    page = call_api(lambda: api.request("GET", "/definitions"))
    if as_json:
        print_json(page)
        return
    table = Table()
    for column in ("name", "version", "activities", "registered"):
        table.add_column(column)
    for d in page["items"]:
        table.add_row(d["name"], str(d["version"]), str(d["activities"]), d["created_at"])
    out.print(table)
