"""The remote commands, against the API at ``FLOW_API_URL``: ``flow start``, ``status``,
``list``, ``events``, ``cancel``, ``retry``, ``delete``, ``definitions``."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from flow.cli.app import (
    api_client,
    call_api,
    err,
    finish,
    main,
    out,
    print_json,
    read_input,
    watch,
)
from flow.core.vocabulary import WorkflowStatus


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
    api = api_client()
    body: dict[str, Any] = {"name": name, "input_data": read_input(input_json)}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
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

    workflow = call_api(lambda: api_client().get(f"/workflows/{workflow_id}"))
    if as_json:
        print_json(workflow)
        return
    out.print(activity_table(workflow))
    out.print(status_line(workflow))


@main.command(name="list")
@click.option("--status", "status_", default=None, help=f"One of: {', '.join(WorkflowStatus)}.")
@click.option("--name", default=None, help="Only workflows of this definition.")
@click.option("--input", "input_json", default=None, help="Only workflows whose input contains this JSON object.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(status_: str | None, name: str | None, input_json: str | None, limit: int, as_json: bool) -> None:
    """List workflows, newest first."""
    contains = None if input_json is None else json.dumps(read_input(input_json), separators=(",", ":"))
    page = call_api(lambda: api_client().get("/workflows", status=status_, name=name, input=contains, limit=limit))
    if as_json:
        print_json(page)
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
    from flow.cli.progress import describe_event

    api = api_client()
    workflow = call_api(lambda: api.get(f"/workflows/{workflow_id}"))
    items, after = [], 0
    while True:
        page = call_api(lambda after=after: api.get(f"/workflows/{workflow_id}/events", after=after, limit=500))
        items += page["items"]
        if not page["next"]:
            break
        after = page["next"]
    if as_json:
        print_json(items)
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
    call_api(lambda: api_client().request("POST", f"/workflows/{workflow_id}/cancel", body=body))
    out.print(f"cancelling {workflow_id}")


@main.command()
@click.argument("workflow_id")
def retry(workflow_id: str) -> None:
    """Run a failed or cancelled workflow again from where it stopped."""
    call_api(lambda: api_client().request("POST", f"/workflows/{workflow_id}/retry"))
    out.print(f"retrying {workflow_id}")


@main.command()
@click.argument("workflow_id")
def delete(workflow_id: str) -> None:
    """Delete an ended workflow with its activities, history, timers and owed messages."""
    call_api(lambda: api_client().request("DELETE", f"/workflows/{workflow_id}"))
    out.print(f"deleted {workflow_id}")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def definitions(name: str | None, as_json: bool) -> None:
    """List the registered definitions, or show one."""
    api = api_client()
    if name:
        shown = call_api(lambda: api.get(f"/definitions/{name}"))
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
