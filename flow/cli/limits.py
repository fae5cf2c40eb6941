"""``flow limits ...``: concurrency limits through the API at ``FLOW_API_URL`` — list
them with what they hold and what waits, show one per key, set a named one's number."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from flow.cli.app import api_client, call_api, main, out, print_json
from flow.cli.client import segment


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """Concurrency limits: slots held and steps waiting (see the README)."""
    if ctx.invoked_subcommand is not None:
        return
    items = call_api(lambda: api_client().get("/limits"))["items"]
    if as_json:
        print_json({"items": items})
        return
    table = Table()
    for column in ("name", "limit", "held", "waiting", "keys"):
        table.add_column(column, overflow="fold")
    for limit in items:
        table.add_row(
            limit["name"],
            _number(limit),
            str(limit["held"]),
            str(limit["waiting"]),
            str(limit["keys"]),
        )
    out.print(table)


def _number(limit: dict[str, Any]) -> str:
    if limit["limit"] is None:
        return "not set"
    return f"{limit['limit']}" + (" (set)" if limit["set_at_run_time"] else "")


def _describe(limit: dict[str, Any]) -> None:
    out.print(f"[bold]{limit['name']}[/]: {_number(limit)}; {limit['held']} held, {limit['waiting']} waiting")
    for k in limit.get("by_key") or []:
        out.print(f"  {k['key'] or '(no key)'}: {k['held']} held, {k['waiting']} waiting")


@limits.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """Show one limit, per key value."""
    shown = call_api(lambda: api_client().get(f"/limits/{segment(name)}"))
    if as_json:
        print_json(shown)
        return
    _describe(shown)


@limits.command(name="set")
@click.argument("name")
@click.argument("number", type=click.IntRange(0, None), required=False)
@click.option("--unset", is_flag=True, help="Forget the number set at run time (the definitions' again).")
def set_(name: str, number: int | None, unset: bool) -> None:
    """Set how many slots of the limit NAME may be held at once per key: raised, what waits
    starts at once; lowered, nothing running stops."""
    if (number is None) == (not unset):
        raise click.UsageError("give a NUMBER, or --unset")
    shown = call_api(
        lambda: api_client().request("PUT", f"/limits/{segment(name)}", body={"limit": None if unset else number})
    )
    _describe(shown)
