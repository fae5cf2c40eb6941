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

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from flow.core import strict_json
from flow.core.priority import DEFAULT_PRIORITY, FIRST_PRIORITY, LAST_PRIORITY
from flow.core.strict_json import JSON
from flow.core.vocabulary import WorkflowStatus
from flow.errors import (
    ConfigurationError,
    DefinitionError,
    FlowError,
    InvalidJson,
    PollTimeout,
)
from flow.loops import poll_until
from flow.settings import Settings

if TYPE_CHECKING:
    from flow.client import Client
    from flow.process.embedded import EmbeddedFlow

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4, 5

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> NoReturn:
    # One line, however narrow the terminal: scripts and logs grep for it.
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def load_settings(*, embedded: bool) -> Settings:
    try:
        return Settings.from_env(embedded=embedded)
    except FlowError as e:
        fail(str(e), EXIT_INVALID)


def read_input(argument: str) -> dict[str, Any]:
    """The ``--input`` object: JSON text, ``@FILE`` (the file's content) or ``-`` (stdin),
    as curl reads ``-d``; an input too large for a command line fits in a file."""
    value = read_json_option(argument, "--input")
    if not isinstance(value, dict):
        fail(f"{_source('--input', argument)} must be a JSON object, e.g. '{{\"x\": 1}}'", EXIT_INVALID)
    return value


def _source(option: str, argument: str) -> str:
    """How an error names where a JSON option's value came from."""
    if argument == "-":
        return f"{option} - (stdin)"
    return f"{option} {argument}" if argument.startswith("@") else option


def read_json_option(argument: str, option: str) -> JSON:
    """Any JSON value given to ``option`` as ``--input`` takes it (text, @FILE or -)."""
    what = _source(option, argument)
    raw: str | bytes = argument
    if argument == "-":
        raw = sys.stdin.buffer.read()
    elif argument.startswith("@"):
        path = argument[1:]
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            fail(f"{what}: cannot read {path!r}: {e.strerror}", EXIT_INVALID)
    try:
        return strict_json.loads(raw, what=what)
    except InvalidJson as e:
        fail(e.message if e.path == "$" else f"{what} {e.path}: {e.message}", EXIT_INVALID)


#: ``--input`` of ``flow run`` and ``flow start``.
input_option = click.option(
    "--input",
    "input_json",
    default="{}",
    metavar="JSON|@FILE|-",
    help="The workflow's input data, a JSON object: inline, @FILE to read a file, - to read stdin.",
)
#: ``--priority`` of ``flow start`` and ``flow run`` (and the filter of ``flow list``).
priority_option = click.option(
    "--priority",
    type=click.IntRange(FIRST_PRIORITY, LAST_PRIORITY),
    default=None,
    help=f"{FIRST_PRIORITY} (first) to {LAST_PRIORITY} (last); default {DEFAULT_PRIORITY}.",
)


#: The workflow filters of ``flow list``, which ``flow batch start`` takes too (one filter
#: type, :mod:`flow.core.workflow_filter`): ``status_``, ``name``, ``input_json``,
#: ``priority``, ``created_after``, ``created_before``.
WORKFLOW_FILTER_OPTIONS = (
    click.option("--status", "status_", default=None, help=f"One of: {', '.join(WorkflowStatus)}."),
    click.option("--name", default=None, help="Only workflows of this definition."),
    click.option("--input", "input_json", default=None, help="Only workflows whose input contains this JSON object."),
    click.option(
        "--priority",
        type=click.IntRange(FIRST_PRIORITY, LAST_PRIORITY),
        default=None,
        help="Only workflows of this priority (1 first to 5 last).",
    ),
    click.option(
        "--attr",
        "attrs",
        multiple=True,
        metavar="NAME[.OP]=VALUE",
        help="Only workflows whose search attribute NAME compares with VALUE (OP: eq (default), ne, gt, gte, lt, "
        "lte); repeat it: all must hold.",
    ),
    click.option("--created-after", default=None, help="Only workflows created at or after this ISO 8601 time."),
    click.option("--created-before", default=None, help="Only workflows created before this ISO 8601 time."),
)


def attribute_condition(text: str) -> tuple[str, str]:
    """``--attr NAME[.OP]=VALUE`` as the API's query parameter ``attr.NAME[.OP]`` and its
    value (the API checks the name, the operator and the value, naming the parameter)."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        fail(f"--attr {text!r} must be NAME=VALUE or NAME.OP=VALUE, e.g. --attr amount.gt=100", EXIT_INVALID)
    return f"attr.{key}", value


def workflow_filter_options(command: Callable[..., T]) -> Callable[..., T]:
    """Decorate ``command`` with :data:`WORKFLOW_FILTER_OPTIONS`, in their order."""
    for option in reversed(WORKFLOW_FILTER_OPTIONS):
        command = option(command)
    return command


def embedded_flow(settings: Settings, **options: Any) -> EmbeddedFlow:
    """The in-process flow for ``settings``; a configuration it cannot start with (an
    activity package that cannot be imported, an invalid definition in the directory)
    exits 2 with the reason, without a traceback."""
    from flow.observability import tracing
    from flow.process.embedded import EmbeddedFlow

    tracing.configure()  # after logging: both commands configure it first
    try:
        return EmbeddedFlow(settings, **options)
    except ConfigurationError as e:
        fail(str(e), EXIT_INVALID)
    except DefinitionError as e:
        print_definition_error(e)
        sys.exit(EXIT_INVALID)


def print_definition_error(e: DefinitionError) -> None:
    for path, message in e.problems:
        err.print(f"[red]{e.source}[/] {path}: {message}", soft_wrap=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def watch(
    fetch_workflow: Callable[[], dict[str, Any]],
    fetch_events: Callable[[int], list[dict[str, Any]]],
    *,
    timeout_s: float | None,
    console: Console,
) -> dict[str, Any]:
    """Print each new history entry until the workflow ends; return its final view."""
    from flow.cli.progress import Narrator

    narrator = Narrator()
    last_event = 0
    latest: dict[str, Any] = {}

    def ended() -> dict[str, Any] | None:
        nonlocal last_event, latest
        # The view first: once it says the workflow ended, the events read after it are all.
        latest = workflow = fetch_workflow()
        events = fetch_events(last_event)
        known = len(workflow.get("activities") or [])
        if any((e.get("position") or 0) >= known for e in events):
            latest = fetch_workflow()  # a map listed its items after the view was read
        for event in events:
            last_event = event["id"]
            for line in narrator.lines(event, latest):
                console.print(line)
        for line in narrator.heartbeats(latest):
            console.print(line)
        return latest if WorkflowStatus(workflow["status"]).ended else None

    try:
        return poll_until(ended, timeout_s=timeout_s, every_s=0.1, what="the workflow to end")
    except PollTimeout:
        return latest  # still in progress: ``finish`` says so and exits accordingly


def finish(workflow: dict[str, Any], *, as_json: bool, timeout_s: float | None) -> NoReturn:
    """Print the final state and exit with the workflow's exit code."""
    from flow.cli.progress import activity_table, status_line

    if as_json:
        print_json(workflow)
    else:
        out.print(activity_table(workflow))
        out.print(status_line(workflow))
    if not WorkflowStatus(workflow["status"]).ended:
        fail(f"workflow {workflow['id']} still {workflow['status']} after {timeout_s} s", EXIT_TIMEOUT)
    sys.exit(EXIT_OK if workflow["status"] == WorkflowStatus.FINISHED else EXIT_FAILED)


class Commands(click.Group):
    """The ``flow`` group, whose commands' modules are imported when a command runs (or
    ``--help`` lists them), as click's documentation's ``LazyGroup`` does: ``flow status``
    starts without loading what ``flow run`` needs (the definitions' JSON Schemas, the
    decision function, the database driver), about a third of a remote command's start."""

    #: Each command's module, which registers it on :data:`main` when imported
    #: (tests/unit/test_cli_commands.py checks the table against the modules).
    MODULES: dict[str, str] = {
        **dict.fromkeys(("run", "up"), "flow.cli.embedded"),
        **dict.fromkeys(("migrate", "prune", "validate"), "flow.cli.local"),
        "replay": "flow.cli.replay",
        "worker": "flow.cli.worker",
        **dict.fromkeys(
            ("cancel", "definitions", "delete", "events", "list", "pause", "rerun", "resume", "retry")
            + ("signal", "start", "status"),
            "flow.cli.remote",
        ),
        "schedules": "flow.cli.schedules",
        "limits": "flow.cli.limits",
        "event": "flow.cli.events",
        "batch": "flow.cli.batches",
        "tokens": "flow.cli.tokens",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.MODULES:
            importlib.import_module(self.MODULES[cmd_name])
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libero-flow")
@click.option(
    "--namespace",
    default=None,
    help="The namespace the remote commands act in (FLOW_NAMESPACE; default: the token's own, else 'default').",
)
def main(namespace: str | None) -> None:
    """Libero Flow: run JSON-defined workflows, embedded or on RabbitMQ and PostgreSQL."""
    if namespace is not None:
        # The one home of settings reads it; the API refuses a malformed one (400).
        os.environ["FLOW_NAMESPACE"] = namespace
    import_from_current_directory()


def import_from_current_directory() -> None:
    """Make packages in the current directory importable (``FLOW_ACTIVITY_PACKAGES=myacts``),
    as ``dramatiq`` does for its workers (its ``--path`` defaults to ``.``).

    Appended rather than put first: a folder that happens to share a name with an
    installed module (an ``api/`` of the user's own) must not shadow Libero Flow's.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def api_client() -> Client:
    """The Python client (:mod:`flow.client`) on the API at ``FLOW_API_URL``: the remote
    commands send every request through it."""
    from flow.client import Client

    settings = load_settings(embedded=False)
    return Client(settings.api_url, token=settings.api_token or "", namespace=settings.namespace or "")


def call_api(fn: Callable[[], T]) -> T:
    """Run an API call; turn its errors into a message and an exit code."""
    from flow.client import ApiError, InvalidRequest, Unavailable

    try:
        return fn()
    except InvalidRequest as e:
        fail(str(e), EXIT_INVALID)
    except ApiError as e:
        # Status 0: no answer (or a request that could not be sent); 429 and 5xx: not now.
        fail(str(e), EXIT_UNAVAILABLE if e.status == 0 or isinstance(e, Unavailable) else EXIT_REFUSED)


def redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url
