"""``flow schedules ...``: cron schedules through the API at ``FLOW_API_URL`` — list,
show, put (from a file), delete, pause, resume and trigger."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, cast

import click
from rich.table import Table

from flow.cli.app import EXIT_INVALID, api_client, call_api, fail, main, out, print_json
from flow.client.transport import segment
from flow.core import strict_json
from flow.errors import InvalidJson

#: Schedules per request of ``flow schedules list`` (the API's largest page).
SCHEDULES_PAGE = 500


@main.group()
def schedules() -> None:
    """Cron schedules: each tick starts one workflow (see the README)."""


def _when(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


@schedules.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """List the schedules with their next run and last run (every page)."""
    api = api_client()
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = call_api(partial(api.request, "GET", "/schedules", params={"cursor": cursor, "limit": SCHEDULES_PAGE}))
        items += answer["items"]
        cursor = answer["next"]
        if cursor is None:
            break
    if as_json:
        print_json({"items": items, "next": None})
        return
    table = Table()
    for column in ("name", "workflow", "cron", "timezone", "next run (UTC)", "last run", "fired", "skipped"):
        table.add_column(column, overflow="fold")
    for s in items:
        last = s["recent_runs"][0] if s["recent_runs"] else None
        table.add_row(
            s["name"] + (" (paused)" if s["paused"] else ""),
            s["workflow"],
            s["cron"],
            s["timezone"],
            _when(s["next_run_at"]),
            f"{_when(last['tick_at'])} {last['status'] or 'deleted'}" if last else "",
            str(s["fired"]),
            str(s["skipped"]),
        )
    out.print(table)


@schedules.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """Show a schedule and its recent runs."""
    shown = call_api(lambda: api_client().request("GET", f"/schedules/{segment(name)}"))
    if as_json:
        print_json(shown)
        return
    _describe(shown)


def _describe(s: dict[str, Any]) -> None:
    state = "paused" if s["paused"] else "active"
    out.print(f"[bold]{s['name']}[/] {state}: {s['workflow']} at {s['cron']!r} ({s['timezone']})")
    out.print(
        f"overlap {s['overlap']}, catch-up {s['catch_up_s']} s, priority {s['priority']}; "
        f"fired {s['fired']}, skipped {s['skipped']}"
    )
    out.print(f"next run: {_when(s['next_run_at']) or '-'} UTC")
    if s["last_error"]:
        out.print(f"[red]last error:[/] {s['last_error']}", soft_wrap=True)
    for run in s["recent_runs"]:
        out.print(f"  {_when(run['tick_at'])}  {run['trigger']:<6}  {run['workflow_id']}  {run['status'] or 'deleted'}")


@schedules.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="The schedule's name (default: the file's \"name\", else its stem).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def put(file: str, name: str | None, as_json: bool) -> None:
    """Create or replace a schedule from a JSON file (the body of PUT /schedules/NAME)."""
    path = Path(file)
    try:
        body = strict_json.loads(path.read_bytes(), what=file)
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror}", EXIT_INVALID)
    except InvalidJson as e:
        fail(f"{file} {e.path}: {e.message}", EXIT_INVALID)
    if not isinstance(body, dict):
        fail(f"{file} must hold a JSON object", EXIT_INVALID)
    name = name or cast(str | None, body.get("name")) or path.name.removesuffix(".json")
    stored = call_api(lambda: api_client().request("PUT", f"/schedules/{segment(name)}", body=body))
    if as_json:
        print_json(stored)
        return
    _describe(stored)


@schedules.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a schedule (the workflows it started stay)."""
    call_api(lambda: api_client().request("DELETE", f"/schedules/{segment(name)}"))
    out.print(f"deleted schedule {name}")


@schedules.command()
@click.argument("name")
def pause(name: str) -> None:
    """Pause a schedule: no tick starts a workflow until it is resumed."""
    call_api(lambda: api_client().request("POST", f"/schedules/{segment(name)}/pause"))
    out.print(f"paused schedule {name}")


@schedules.command()
@click.argument("name")
def resume(name: str) -> None:
    """Resume a schedule from now on (the ticks of the pause are not caught up)."""
    shown = call_api(lambda: api_client().request("POST", f"/schedules/{segment(name)}/resume"))
    out.print(f"resumed schedule {name}; next run {_when(shown['next_run_at'])} UTC")


@schedules.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def trigger(name: str, as_json: bool) -> None:
    """Start the schedule's workflow now."""
    workflow = call_api(lambda: api_client().request("POST", f"/schedules/{segment(name)}/trigger"))
    if as_json:
        print_json(workflow)
        return
    out.print(f"started [bold]{workflow['name']}[/] {workflow['id']}")
