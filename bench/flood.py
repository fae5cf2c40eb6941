"""``python -m bench.flood``: a flood of starts the API must shed (issue 26).

``--rate 100000/min --clients 50 --seconds 60`` sends that many ``POST /workflows``
(a workflow of ``--steps`` no-op activities) from that many keep-alive clients, paced
open-loop (:mod:`flow.testing.flood`), to gunicorn (``--api-workers``, 2) in front of
``--engines`` engines (1) and ``--workers`` workers (2) on the local PostgreSQL and
RabbitMQ (a database and queue prefix of its own, removed afterwards). Then it waits for
everything accepted to end and the queues to drain, and checks the database as the
fault suite does (:func:`flow.testing.check_settled`): every accepted start ended
``Finished``, none is lost, none ran twice, and nothing was stored that the API did not
accept (a shed start stores nothing; a half-stored start would show as a workflow
without its activities).

It prints: accepted, shed by code, unexpected answers (a 500) and unanswered starts
(client timeouts, ``--timeout`` 10 s), which must both be 0; p50/p99 of the answered
starts; how late the driver sent them; the peak of the engines' RSS (``/proc``, every
0.2 s) and of the backlog of unstarted workflows; and the time from the last answer
until the queues were empty and every accepted workflow had ended. ``--json`` writes
the figures to a file too. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from flow.errors import PollTimeout
from flow.loops import poll_until
from flow.testing import (
    Cluster,
    ServicesUnavailable,
    check_services,
    check_settled,
    child_pids,
    new_database,
    new_queue_prefix,
    query,
    queue_depth,
    unhandled_errors,
)
from flow.testing.flood import flood_from_processes
from flow.testing.sampling import PeakSampler

#: Production defaults where the harness's cluster shortens them for fault tests: a
#: 3 s outbox grace would send starts again while they wait in a long queue.
PRODUCTION = {
    "FLOW_OUTBOX_GRACE_S": "30",
    "FLOW_OUTBOX_POLL_S": "1",
    "FLOW_PARTITION_LEASE_S": "10",
    "FLOW_LOG_LEVEL": "WARNING",
}


def rate_per_s(text: str) -> float:
    """``100000/min``, ``1667/s`` or ``1667``: starts per second."""
    number, _, unit = text.partition("/")
    per = {"": 1.0, "s": 1.0, "min": 60.0}.get(unit.strip())
    if per is None:
        raise argparse.ArgumentTypeError(f"a rate is N, N/s or N/min, not {text!r}")
    return float(number) / per


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, in KiB (0 for a process gone)."""
    total = 0
    for each in (pid, *child_pids(pid)):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


class Readings:
    """What the bench takes the peaks of (with :class:`~flow.testing.sampling.PeakSampler`,
    every 0.2 s): the engines' RSS at each read, the backlog of unstarted workflows at every
    fifth, on one connection kept open (on a machine whose PostgreSQL is at
    max_connections a new one is refused; ``misses`` counts the reads it refused)."""

    def __init__(self, cluster: Cluster, engines: list[str]) -> None:
        self.pg_url = cluster.pg_url
        self.pids = [cluster.procs.procs[name].pid for name in engines]
        self.turn = 0
        self.misses = 0
        self.connection: Any = None

    def __call__(self) -> dict[str, int]:
        read = {"engine_rss_kib": sum(rss_kib(pid) for pid in self.pids)}
        self.turn += 1
        if self.turn % 5 == 0:
            try:
                self.connection = self.connection or psycopg2.connect(self.pg_url)
                self.connection.autocommit = True
                with self.connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM workflows WHERE NOT started")
                    read["unstarted"] = cursor.fetchone()[0]
            except psycopg2.Error:
                self.misses += 1
                self.connection = None
        return read


def queued(cluster: Cluster, partitions: int) -> int:
    """Messages ready in the partition queues and the activity queue."""
    names = [f"{cluster.prefix}.engine.{p}" for p in range(partitions)] + [f"{cluster.prefix}.activities"]
    total = 0
    for name in names:
        try:
            total += queue_depth(name)
        except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
            continue
    return total


def settle(cluster: Cluster, accepted: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`check_settled`'s figures, or why it failed; again while PostgreSQL refuses
    its connections (at max_connections, on a machine shared with other runs)."""
    deadline = time.monotonic() + args.drain_timeout
    while True:
        try:
            settled = check_settled(
                cluster.pg_url, accepted, {"Flood": "Finished"}, timeout_s=max(1.0, deadline - time.monotonic())
            )
            poll_until(lambda: queued(cluster, args.partitions) == 0, timeout_s=60, what="the queues to drain")
            return dict(settled)
        except psycopg2.OperationalError as e:
            if time.monotonic() > deadline:
                return {"failed": f"the database refused the checker: {e}"}
            time.sleep(1)
        except (AssertionError, PollTimeout) as e:
            return {"failed": str(e)[:2000]}


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    definition = {
        "name": "Flood",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"name": "NoopActivity"}] * args.steps,
    }
    with new_database() as pg_url, new_queue_prefix() as prefix:
        api_env = {}
        if args.max_start_backlog:
            api_env["FLOW_MAX_START_BACKLOG"] = str(args.max_start_backlog)
        if args.max_starts_in_flight:
            api_env["FLOW_MAX_STARTS_IN_FLIGHT"] = str(args.max_starts_in_flight)
        env = {**PRODUCTION, "FLOW_PARTITIONS": str(args.partitions)}
        cluster = Cluster(base, pg_url, prefix, {"Flood": definition}, env=env)
        try:
            cluster.start(engines=args.engines, workers=args.workers, api_workers=args.api_workers, api_env=api_env)
            poll_until(
                lambda: sum(held for held, _ in cluster.engines().values()) == args.partitions,
                timeout_s=120,
                what="the engines to hold every partition",
            )
            engines = [f"engine-{i}" for i in range(args.engines)]
            rss_idle = sum(rss_kib(cluster.procs.procs[name].pid) for name in engines)
            total = round(args.rate * args.seconds)
            print(f"flooding {cluster.url} with {total} starts over {args.seconds:g} s from {args.clients} clients")
            readings = Readings(cluster, engines)
            with PeakSampler(readings, every_s=0.2) as peaks:
                result = flood_from_processes(
                    cluster.url,
                    "Flood",
                    total=total,
                    seconds=args.seconds,
                    clients=args.clients,
                    processes=args.driver_processes,
                    timeout_s=args.timeout,
                )
                answered_at = time.monotonic()
                print(json.dumps(result.summary()), flush=True)
                print(f"flood over after {result.seconds:.1f} s; waiting for the accepted workflows to end", flush=True)
                accepted = {workflow_id: "Flood" for workflow_id in result.accepted}
                settled = settle(cluster, accepted, args)
                drain_s = time.monotonic() - answered_at
            half_stored = query(
                pg_url,
                "SELECT count(*) FROM workflows w WHERE (SELECT count(*) FROM activities a "
                "WHERE a.workflow_id = w.id) <> %s",
                args.steps,
            )[0][0]
            figures = {
                **result.summary(),
                "offered_rate_per_s": args.rate,
                "clients": args.clients,
                "driver_processes": args.driver_processes,
                "api_workers": args.api_workers,
                "engines": args.engines,
                "workers": args.workers,
                "steps": args.steps,
                "engine_rss_idle_mib": round(rss_idle / 1024, 1),
                "engine_rss_peak_mib": round(peaks.peak["engine_rss_kib"] / 1024, 1),
                "unstarted_backlog_peak": peaks.peak["unstarted"],
                "unstarted_backlog_samples_missed": readings.misses,
                "drain_s": round(drain_s, 1),
                "settled": settled,
                "half_stored": half_stored,
                "api_tracebacks": unhandled_errors(cluster.procs.log("api")),
            }
        finally:
            cluster.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate", type=rate_per_s, default=rate_per_s("100000/min"), help="N/min, N/s (default 100000/min)"
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--driver-processes", type=int, default=2, help="processes the clients are spread over")
    parser.add_argument("--timeout", type=float, default=10, help="a client's timeout, in seconds")
    parser.add_argument("--steps", type=int, default=1, help="no-op activities per workflow")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--max-start-backlog", type=int, help="FLOW_MAX_START_BACKLOG of the API (default: its own)")
    parser.add_argument("--max-starts-in-flight", type=int, help="FLOW_MAX_STARTS_IN_FLIGHT of the API")
    parser.add_argument("--drain-timeout", type=float, default=900, help="seconds to wait for the accepted to end")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    try:
        check_services()
    except ServicesUnavailable as e:
        raise SystemExit(f"python -m bench.flood needs the local PostgreSQL and RabbitMQ: {e}") from None
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args, Path(tmp))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    failed = figures["unexpected"] or figures["unanswered"] or figures["shed_without_retry_after"]
    if failed or figures["half_stored"] or figures["api_tracebacks"] or "failed" in figures["settled"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
