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
    api_client,
    attribute_condition,
    call_api,
    err,
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
from flow.cli.client import segment as _segment
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
    body: dict[str, Any] = {"name": name, "input_data": read_input(input_json)}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    if priority is not None:  # else the server's default
        body["priority"] = priority
    if attributes_json is not None:  # the API checks them against the definition, naming each
        body["attributes"] = read_json_option(attributes_json, "--attributes")
    workflow = call_api(lambda: api.request("POST", "/workflows", body=body))
    if not wait:
        if as_json:
            print_json(workflow)
        else:
            out.print(f"started [bold]{workflow['name']}[/] {workflow['id']}")
        return
    console = err if as_json else out
    console.print(f"started [bold]{workflow['name']}[/] [dim]{workflow['id']}[/]")
    path = f"/workflows/{workflow['id']}"
    final = watch(
        lambda: call_api(lambda: api.get(path)),
        lambda after: call_api(lambda: api.get(f"{path}/events", after=after, limit=500))["items"],
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

    workflow = call_api(lambda: api_client().get(f"/workflows/{_segment(workflow_id)}"))
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
    contains = None if input_json is None else json.dumps(read_input(input_json), separators=(",", ":"))
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
        page = call_api(partial(api.get, "/workflows", **filters, **conditions, limit=limit, cursor=cursor))
        items += page["items"]
        cursor = page["next"]
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
    workflow = call_api(lambda: api.get(f"/workflows/{_segment(workflow_id)}"))
    items, after = [], 0
    while True:
        page = call_api(partial(api.get, f"/workflows/{_segment(workflow_id)}/events", after=after, limit=500))
        items += page["items"]
        if not page["next"]:
            break
        after = page["next"]
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
    body = {"reason": reason} if reason else None
    call_api(lambda: api_client().request("POST", f"/workflows/{_segment(workflow_id)}/cancel", body=body))
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
    body = None if data is None else {"payload": read_json_option(data, "--data")}
    if token is not None:
        sent = call_api(lambda: api_client().request("POST", f"/signals/{_segment(token)}", body=body))
        out.print(f"sent signal {sent['name']} to {sent['workflow_id']} by its callback token")
        return
    assert workflow_id is not None and name is not None  # the usage check above
    headers = {"Idempotency-Key": key} if key else None
    sent = call_api(
        lambda: api_client().request(
            "POST", f"/workflows/{_segment(workflow_id)}/signals/{_segment(name)}", body=body, headers=headers
        )
    )
    out.print(f"sent signal {name} to {workflow_id} (signal id {sent['signal_id']})")


@main.command()
@click.argument("workflow_id")
def pause(workflow_id: str) -> None:
    """Pause a running workflow: nothing new is scheduled until it resumes."""
    call_api(lambda: api_client().request("POST", f"/workflows/{_segment(workflow_id)}/pause"))
    out.print(f"pausing {workflow_id}")


@main.command()
@click.argument("workflow_id")
def resume(workflow_id: str) -> None:
    """Let a paused workflow go on."""
    call_api(lambda: api_client().request("POST", f"/workflows/{_segment(workflow_id)}/resume"))
    out.print(f"resuming {workflow_id}")


@main.command()
@click.argument("workflow_id")
def retry(workflow_id: str) -> None:
    """Run a failed or cancelled workflow again from where it stopped."""
    call_api(lambda: api_client().request("POST", f"/workflows/{_segment(workflow_id)}/retry"))
    out.print(f"retrying {workflow_id}")


@main.command()
@click.argument("workflow_id")
@click.option("--from", "from_step", required=True, help="The id of the step to rerun from.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Run on this definition version.")
@click.option("--input", "input_json", default=None, metavar="JSON|@FILE|-", help="The new run's input.")
def rerun(workflow_id: str, from_step: str, version: int | None, input_json: str | None) -> None:
    """Run an ended workflow again from a step: it and what depends on it run again."""
    body: dict[str, Any] = {"from": from_step, "by": _user()}
    if version is not None:
        body["version"] = version
    if input_json is not None:
        body["input_data"] = read_input(input_json)
    call_api(lambda: api_client().request("POST", f"/workflows/{_segment(workflow_id)}/rerun", body=body))
    out.print(f"rerunning {workflow_id} from {from_step}")


def _user() -> str:
    """Who asks, for the workflow's history: ``cli:<login>`` (``cli`` when it cannot be told)."""
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
    call_api(lambda: api_client().request("DELETE", f"/workflows/{_segment(workflow_id)}"))
    out.print(f"deleted {workflow_id}")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def definitions(name: str | None, as_json: bool) -> None:
    """List the registered definitions, or show one."""
    api = api_client()
    if name:
        shown = call_api(lambda: api.get(f"/definitions/{_segment(name)}"))
        if as_json:
            print_json(shown)
            return
        out.print(f"[bold]{shown['name']}[/] version {shown['version']} ({len(shown['versions'])} versions)")
        out.print_json(json.dumps(shown["definition"]))
        return
    page = call_api(lambda: api.get("/definitions"))
    if as_json:
        print_json(page)
        return
    table = Table()
    for column in ("name", "version", "activities", "registered"):
        table.add_column(column)
    for d in page["items"]:
        table.add_row(d["name"], str(d["version"]), str(d["activities"]), d["created_at"])
    out.print(table)
