"""``flow limits ...``: concurrency limits through the API at ``FLOW_API_URL`` — list
them with what they hold and what waits, show one per key, set a named one's number."""

from __future__ import annotations

import math
from typing import Any

import click
from rich.table import Table

from flow.cli.app import api_client, call_api, main, out, print_json
from flow.client.transport import segment
from flow.core.limits import MAX_RATE, MIN_RATE


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """Concurrency limits: slots held and steps waiting (see the README)."""
    if ctx.invoked_subcommand is not None:
        return
    items = call_api(lambda: api_client().request("GET", "/limits"))["items"]
    if as_json:
        print_json({"items": items})
        return
    table = Table()
    for column in ("name", "kind", "limit", "held", "waiting", "keys"):
        table.add_column(column, overflow="fold")
    for limit in items:
        table.add_row(
            limit["name"],
            limit.get("kind", "concurrency"),
            _number(limit),
            str(limit["held"]),
            str(limit["waiting"]),
            str(limit["keys"]),
        )
    out.print(table)


def _number(limit: dict[str, Any]) -> str:
    """``3``, ``3 (set)``, ``10/s, burst 5 (set)`` or ``not set``."""
    if limit.get("kind") == "rate":
        if limit["per_s"] is None:
            return "not set"
        text = f"{limit['per_s']:g}/s" + (f", burst {limit['burst']}" if limit.get("burst") else "")
    elif limit["limit"] is None:
        return "not set"
    else:
        text = f"{limit['limit']}"
    return text + (" (set)" if limit["set_at_run_time"] else "")


def _describe(limit: dict[str, Any]) -> None:
    out.print(f"[bold]{limit['name']}[/]: {_number(limit)}; {limit['held']} held, {limit['waiting']} waiting")
    for k in limit.get("by_key") or []:
        out.print(f"  {k['key'] or '(no key)'}: {k['held']} held, {k['waiting']} waiting")


@limits.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """Show one limit, per key value."""
    shown = call_api(lambda: api_client().request("GET", f"/limits/{segment(name)}"))
    if as_json:
        print_json(shown)
        return
    _describe(shown)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets nan through (it compares false with both bounds).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a number from {MIN_RATE:g} to {MAX_RATE:g}, not {value}")
    return value


@limits.command(name="set")
@click.argument("name")
@click.argument("number", type=click.IntRange(0, None), required=False)
@click.option(
    "--per-s", type=click.FloatRange(MIN_RATE, MAX_RATE), callback=_finite, help="A rate limit's starts per second."
)
@click.option("--burst", type=click.IntRange(1, None), help="A rate limit's starts at once.")
@click.option("--unset", is_flag=True, help="Forget what was set at run time (the definitions' numbers again).")
def set_(name: str, number: int | None, per_s: float | None, burst: int | None, unset: bool) -> None:
    """Set how many slots of the concurrency limit NAME may be held at once per key (NUMBER),
    or how many steps of the rate limit NAME may start per second (--per-s, --burst):
    raised, what waits starts at once; lowered, nothing running stops."""
    given = {k: v for k, v in (("limit", number), ("per_s", per_s), ("burst", burst)) if v is not None}
    if bool(given) == unset:
        raise click.UsageError("give a NUMBER, --per-s or --burst; or --unset")
    body: dict[str, Any] = {"limit": None, "per_s": None, "burst": None} if unset else given
    shown = call_api(lambda: api_client().request("PUT", f"/limits/{segment(name)}", body=body))
    _describe(shown)
