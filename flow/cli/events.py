"""``flow event ...``: event triggers through the API at ``FLOW_API_URL`` — send an
event, show what one started, list the recent ones. (``flow events WORKFLOW_ID`` is a
workflow's history: hence the singular.)"""

from __future__ import annotations

from functools import partial
from typing import Any

import click
from rich.table import Table

from flow.cli.app import EXIT_INVALID, api_client, call_api, fail, main, out, print_json, read_json_option
from flow.client.transport import segment


@main.group()
def event() -> None:
    """Events for the definitions' triggers (see the README, "Event triggers")."""


def _when(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


@event.command()
@click.argument("event_type", metavar="TYPE")
@click.option(
    "--data",
    "data_json",
    default="{}",
    metavar="JSON|@FILE|-",
    help="The event's data, a JSON object: inline, @FILE to read a file, - to read stdin.",
)
@click.option(
    "--id",
    "event_id",
    default=None,
    help="The event's id (default: a new one, client-<uuid>); a resent id starts nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def send(event_type: str, data_json: str, event_id: str | None, as_json: bool) -> None:
    """Send an event of type TYPE (order.updated) to the triggers."""
    data = read_json_option(data_json, "--data")
    if not isinstance(data, dict):
        fail("--data must be a JSON object, e.g. '{\"order_id\": 42}'", EXIT_INVALID)
    shown = dict(call_api(lambda: api_client().send_event(event_type, data, id=event_id)).raw)
    if as_json:
        print_json(shown)
        return
    if shown.get("duplicate"):
        out.print(f"event {shown['id']} was sent before: nothing new started")
    _describe(shown)


@event.command()
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(event_id: str, as_json: bool) -> None:
    """Show an event and the workflows it started, or why none."""
    shown = call_api(lambda: api_client().request("GET", f"/events/{segment(event_id)}"))
    if as_json:
        print_json(shown)
        return
    _describe(shown)


@event.command(name="list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Events to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(limit: int, as_json: bool) -> None:
    """List the recent events, newest first."""
    answer = call_api(partial(api_client().request, "GET", "/events", params={"limit": limit}))
    if as_json:
        print_json(answer)
        return
    table = Table()
    for column in ("received (UTC)", "id", "type", "workflows"):
        table.add_column(column, overflow="fold")
    for e in answer["items"]:
        table.add_row(_when(e["received_at"]), e["id"], e["type"], _started(e))
    out.print(table)


def _started(e: dict[str, Any]) -> str:
    if not e["matched"]:
        return f"none: {e.get('reason', '')}"
    return ", ".join(f"{m['definition']} {m['workflow_id']} ({m['state']})" for m in e["matched"])


def _describe(e: dict[str, Any]) -> None:
    out.print(f"[bold]{e['id']}[/] {e['type']} received {_when(e['received_at'])} UTC")
    if not e["matched"]:
        out.print(f"started nothing: {e.get('reason', '')}", soft_wrap=True)
    for m in e["matched"]:
        state = m["state"] + (f" {m['status']}" if m.get("status") else "")
        if m["state"] == "waiting":
            state += f" (its {m['mode']} window closes {_when(m.get('closes_at'))} UTC)"
        out.print(f"  {m['definition']} trigger {m['trigger']}: {m['workflow_id']} {state}", soft_wrap=True)
    for m in e["missed"]:
        out.print(f"  {m['definition']} trigger {m['trigger']}: not matched, {m['reason']}", soft_wrap=True)
