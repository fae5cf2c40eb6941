"""``flow worker``: the activity workers of one or more worker pools, as a Dramatiq
process (``dramatiq flow.actors --queues ...``) that a user need not spell.

``flow worker --pool gpu`` serves ``<prefix>.activities.gpu``; ``--pool default`` (also
what no ``--pool`` means) serves ``<prefix>.activities``. The command replaces itself
with Dramatiq's (``exec``), so that signals from a process manager (honcho, compose,
systemd) reach Dramatiq's master as if it had been started directly.
"""

from __future__ import annotations

import os
import sys

import click

from flow.cli.app import EXIT_INVALID, fail, load_settings, main
from flow.core.pools import DEFAULT_POOL, POOL_RULE, is_pool_name, pool_queues


def worker_argv(activity_queue: str, pools: tuple[str, ...], *, threads: int, processes: int | None) -> list[str]:
    """The ``dramatiq`` command line that serves ``pools`` (none: the default pool)."""
    argv = [sys.executable, "-m", "dramatiq", "flow.actors", "--threads", str(threads)]
    if processes is not None:
        argv += ["--processes", str(processes)]
    return [*argv, "--queues", *pool_queues(activity_queue, pools or (DEFAULT_POOL,))]


@main.command()
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="NAME",
    help="A worker pool to serve (repeat for several): 'gpu' serves <prefix>.activities.gpu; "
    "'default' (the default) serves <prefix>.activities.",
)
@click.option("--threads", type=click.IntRange(1, 1024), default=8, show_default=True, help="Threads per process.")
@click.option(
    "--processes", type=click.IntRange(1, 1024), default=None, help="Worker processes (default: one per CPU)."
)
def worker(pools: tuple[str, ...], threads: int, processes: int | None) -> None:
    """Run activity workers for the given worker pools (on RabbitMQ; FLOW_ settings as
    every process reads them)."""
    for pool in pools:
        if not is_pool_name(pool):
            fail(f"--pool {pool!r} is not a worker pool: {POOL_RULE}", EXIT_INVALID)
    settings = load_settings(embedded=False)
    if settings.uses_in_process_broker:
        fail(
            "flow worker needs RabbitMQ (FLOW_BROKER_URL=amqp://...); flow run and flow up serve every pool",
            EXIT_INVALID,
        )
    argv = worker_argv(settings.activity_queue, pools, threads=threads, processes=processes)
    sys.stdout.flush()
    os.execv(argv[0], argv)
