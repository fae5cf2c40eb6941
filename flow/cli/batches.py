"""``flow batch ...``: bulk operations through the API at ``FLOW_API_URL`` — start one
(with the filters of ``flow list``), show one, list them, cancel one; ``--watch`` shows
the progress until the batch ends."""

from __future__ import annotations

import getpass
from typing import Any

import click
from rich.table import Table

from flow.cli.app import (
    api_client,
    attribute_condition,
    call_api,
    main,
    out,
    print_json,
    read_input,
    read_json_option,
    workflow_filter_options,
)
from flow.client.transport import segment
from flow.core.batches import BatchOperation, BatchStatus
from flow.loops import poll_until

#: Seconds between two looks at a watched batch.
WATCH_EVERY_S = 0.5


@main.group()
def batch() -> None:
    """Bulk operations: cancel, retry or rerun every workflow a filter matches (see the README)."""


def progress_line(b: dict[str, Any]) -> str:
    """One line of a batch's progress."""
    return (
        f"{b['operation']} batch {b['id']} {b['status']}: matched {b['matched']}, done {b['done']}, "
        f"failed {b['failed']}, skipped {b['skipped']}, pending {b['pending']}"
    )


def _describe(b: dict[str, Any]) -> None:
    out.print(progress_line(b), soft_wrap=True)
    out.print(f"filter {b['filter']}" + (f", rerun {b['rerun']}" if b["rerun"] else ""), soft_wrap=True)
    for problem in b.get("problems", []):
        out.print(f"  {problem['outcome']:<7} {problem['workflow_id']}  {problem['reason'] or ''}", soft_wrap=True)


def _watch(batch_id: str) -> dict[str, Any]:
    """Print the progress each time it changes, until the batch ends; the last view."""
    api = api_client()
    shown: list[str] = []

    def ended() -> dict[str, Any] | None:
        b = call_api(lambda: api.request("GET", f"/batches/{segment(batch_id)}"))
        line = progress_line(b)
        if not shown or shown[-1] != line:
            out.print(line, soft_wrap=True)
            shown.append(line)
        return b if BatchStatus(b["status"]).ended else None

    return poll_until(ended, timeout_s=None, every_s=WATCH_EVERY_S, what=f"batch {batch_id}")


@batch.command()
@click.argument("operation", type=click.Choice([o.value for o in BatchOperation]))
@workflow_filter_options
@click.option("--from", "from_step", default=None, help="rerun: the activity id to rerun from.")
@click.option("--version", type=int, default=None, help="rerun: the definition version to rerun on.")
@click.option("--rerun-input", default=None, metavar="JSON|@FILE|-", help="rerun: new input data.")
@click.option("--watch", is_flag=True, help="Show the progress until the batch ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(
    operation: str,
    status_: str | None,
    name: str | None,
    input_json: str | None,
    priority: int | None,
    attrs: tuple[str, ...],
    created_after: str | None,
    created_before: str | None,
    from_step: str | None,
    version: int | None,
    rerun_input: str | None,
    watch: bool,
    as_json: bool,
) -> None:
    """Start a batch OPERATION on every workflow the filters match (none: every workflow)."""
    given = {
        "status": status_,
        "name": name,
        "input": None if input_json is None else read_input(input_json),
        "priority": priority,
        "created_after": created_after,
        "created_before": created_before,
    }
    body: dict[str, Any] = {
        "operation": operation,
        "filter": {k: v for k, v in given.items() if v is not None} | dict(attribute_condition(a) for a in attrs),
        "created_by": getpass.getuser() or "cli",
    }
    if from_step is not None or version is not None or rerun_input is not None:
        rerun: dict[str, Any] = {"from": from_step}
        if version is not None:
            rerun["version"] = version
        if rerun_input is not None:
            rerun["input_data"] = read_json_option(rerun_input, "--rerun-input")
        body["rerun"] = rerun
    started = call_api(lambda: api_client().request("POST", "/batches", body=body))
    if as_json and not watch:
        print_json(started)
        return
    out.print(f"started {progress_line(started)}", soft_wrap=True)
    if watch:
        last = _watch(started["id"])
        if as_json:
            print_json(last)


@batch.command()
@click.argument("batch_id")
@click.option("--watch", is_flag=True, help="Show the progress until the batch ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(batch_id: str, watch: bool, as_json: bool) -> None:
    """Show a batch: its progress and its first problems."""
    if watch:
        _watch(batch_id)
    shown = call_api(lambda: api_client().request("GET", f"/batches/{segment(batch_id)}"))
    if as_json:
        print_json(shown)
        return
    _describe(shown)


@batch.command(name="list")
@click.option("--status", "status_", type=click.Choice([s.value for s in BatchStatus]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500), help="Batches shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(status_: str | None, limit: int, as_json: bool) -> None:
    """List the batches, newest first, with their progress."""
    answer = call_api(lambda: api_client().request("GET", "/batches", params={"status": status_, "limit": limit}))
    if as_json:
        print_json(answer)
        return
    table = Table()
    for column in ("id", "operation", "status", "matched", "done", "failed", "skipped", "created (UTC)"):
        table.add_column(column, overflow="fold")
    for b in answer["items"]:
        table.add_row(
            b["id"],
            b["operation"],
            b["status"],
            *(str(b[key]) for key in ("matched", "done", "failed", "skipped")),
            b["created_at"][:19].replace("T", " "),
        )
    out.print(table)


@batch.command()
@click.argument("batch_id")
def cancel(batch_id: str) -> None:
    """Stop a running batch: what was sent stays sent, the rest is skipped."""
    shown = call_api(lambda: api_client().request("POST", f"/batches/{segment(batch_id)}/cancel"))
    out.print(f"cancelling {progress_line(shown)}", soft_wrap=True)
