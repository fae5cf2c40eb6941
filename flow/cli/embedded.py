"""``flow run`` and ``flow up``: everything in this process, on the embedded default."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from flow.cli.app import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    embedded_flow,
    err,
    fail,
    finish,
    input_option,
    load_settings,
    main,
    out,
    print_definition_error,
    priority_option,
    read_input,
    redact,
    watch,
)
from flow.core.priority import DEFAULT_PRIORITY
from flow.errors import DefinitionError, DefinitionNotFound, InvalidInput, StoreUnavailable
from flow.process.logs import configure_logging


@main.command()
@click.argument("target")
@input_option
@priority_option
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up waiting after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON instead of a table.")
def run(target: str, input_json: str, priority: int | None, timeout_s: float | None, as_json: bool) -> None:
    """Run a workflow in this process, showing its progress.

    TARGET is a definition name from FLOW_DEFINITIONS_DIR (default ./workflows) or a
    path to a definition file. State goes to FLOW_DATABASE_URL (default
    sqlite:///flow.db); no broker or other service is needed.
    """
    from api.views import event_view, workflow_view
    from flow.service import catalog

    settings = load_settings(embedded=True)
    configure_logging(settings, default_level="WARNING")
    input_data = read_input(input_json)
    console = err if as_json else out
    try:
        with embedded_flow(settings) as flow:
            name = target
            if target.endswith(".json") or Path(target).is_file():
                definition = catalog.load_file(target, known_activities=flow.runtime.activity_classes)
                flow.add_definition(definition)
                name = definition.name
            workflow_id = flow.start(name, input_data, priority=priority or DEFAULT_PRIORITY)
            console.print(f"started [bold]{name}[/] [dim]{workflow_id}[/]")
            store = flow.runtime.store
            workflow = watch(
                lambda: workflow_view(store.get(workflow_id)),
                lambda after: [event_view(e) for e in store.events(workflow_id, after_id=after)],
                timeout_s=timeout_s,
                console=console,
            )
    except DefinitionError as e:
        print_definition_error(e)
        sys.exit(EXIT_INVALID)
    except (DefinitionNotFound, InvalidInput) as e:
        fail(str(e), EXIT_INVALID)
    except StoreUnavailable as e:
        fail(f"{e} (FLOW_DATABASE_URL={redact(settings.database_url)})", EXIT_UNAVAILABLE)
    finish(workflow, as_json=as_json, timeout_s=timeout_s)


def stop_on_signals() -> None:
    """Stop on Ctrl-C (SIGINT) and on SIGTERM (``docker stop``, a supervisor), once.

    Set explicitly: a process started in the background by a script, or under
    ``nohup``, inherits SIGINT as ignored, and Python then never raises
    KeyboardInterrupt. A repeated signal while stopping is ignored, so the shutdown
    (workers finishing what they run, the engine's last commit) is not cut short.
    """

    def stop(signum: int, frame: object) -> None:
        for repeated in (signal.SIGINT, signal.SIGTERM):
            signal.signal(repeated, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


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
    from flow.cli.wsgi_server import QuietHandler, ThreadingWSGIServer

    settings = load_settings(embedded=True)
    configure_logging(settings)
    with embedded_flow(settings, worker_threads=threads) as flow:
        app = create_app(runtime=flow.runtime)
        try:
            server = make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror}", EXIT_UNAVAILABLE)
        server.max_body_bytes = settings.max_body_bytes  # chunked bodies are cut there (plus one byte)
        out.print(f"Libero Flow on [bold]http://{host}:{port}[/] (database {redact(settings.database_url)})")
        stop_on_signals()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            out.print("stopping")
        finally:
            server.server_close()
