"""``python -m bench.soak``: a long run of a mixed load under random faults.

For ``--minutes`` (default 30) it keeps ``--in-flight`` workflows of the fault suite's
mixed load running (:data:`flow.testing.definitions.FAULT_DEFINITIONS`: sequences,
fan-outs behind a named limit, retries, failures, a map with a keyed limit, sleeps, a
child behind an inline limit, waits that the soak signals) on two engines and two
workers, on the local PostgreSQL and RabbitMQ. Every engine's link to PostgreSQL and
every engine's and worker's link to RabbitMQ goes through a
:class:`flow.testing.proxy.FaultProxy`; the API's links are direct. About every
``--interval`` seconds it injects one fault, drawn at random:

- ``sigkill``: SIGKILL an engine's or a worker's process (the supervisor restarts it);
- ``sigstop``: SIGSTOP an engine until the other has taken its partitions (past its
  lease), then SIGCONT: what it was about to commit is fenced;
- ``latency``: 200-500 ms (± 100 ms) each way on one link, for 3 s to ``--hold`` (25 s);
- ``black_hole``: one link open and silent (no RST), for 3 s to ``--hold`` (25 s);
- ``reset``: every connection of one link reset (RST both ways).

After each fault it measures the recovery: from the fault's end (the kill, the SIGCONT,
the heal) until two live engines hold 8 of the 16 partitions each and both workers
consume again. At the end it waits for the run to settle and reads the database with
the fault suite's checker (:func:`flow.testing.cluster.find_problems`): workflows
started and ended by status, lost (accepted, never stored or never ended), stuck,
decided twice (from the history), slots still held. It exits 1 when any of those is
above 0 or a fault was not recovered from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pika.exceptions
import psycopg2

from flow.core.vocabulary import UNENDED
from flow.errors import PollTimeout
from flow.loops import BackgroundLoop, poll_until
from flow.persistence.leases import engine_host_pid
from flow.testing import (
    AMQP_URL,
    Cluster,
    FaultProxy,
    ServicesUnavailable,
    check_services,
    child_pids,
    new_database,
    new_queue_prefix,
    query,
    queue_consumers,
    unhandled_errors,
)
from flow.testing.cluster import FAST_RECOVERY, PROBLEMS, find_problems
from flow.testing.definitions import ACTIVITY_PACKAGE, FAULT_BATCH, FAULT_DEFINITIONS, FAULT_EXPECTED

KINDS = ("sigkill", "sigstop", "latency", "black_hole", "reset")
#: What one round of the load starts: the fault suite's batch, a wait for a signal, a
#: 4 s sleep and a retry 6 s later (a timer).
LOAD = [*FAULT_BATCH, "AwaitApproval", "LongNap", "LongWait"]
LEASE_S = float(FAST_RECOVERY["FLOW_PARTITION_LEASE_S"])
PARTITIONS = int(FAST_RECOVERY["FLOW_PARTITIONS"])
#: AMQP heartbeat of the proxied links, and the database silence bound of the engines
#: (as in tests/faults/test_network*.py): a silent link is noticed within seconds.
HEARTBEAT_S = 2
SILENT = {"FLOW_DATABASE_TIMEOUT_S": "2", "FLOW_QUERY_TIMEOUT_S": "1"}
T = TypeVar("T")
ENGINES = ("engine-0", "engine-1")
WORKERS = ("worker-0", "worker-1")


def _retry(read: Callable[[], T]) -> T:
    """``read()``, tried again for a minute while PostgreSQL refuses the soak's own
    connection: its 100 slots are shared with whatever else runs on this machine, and a
    full server must not end the soak (the engines and the API meet it as a fault)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return read()
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``Z`` for a zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _post(url: str, body: dict, *, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the cluster's own API
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")}


class Load:
    """Keeps ``in_flight`` top-level workflows unended: one round of :data:`LOAD` at a
    time through the API; signals each wait 0 to 5 s after its start (some arrive before
    the wait, which keeps them)."""

    def __init__(self, cluster: Cluster, in_flight: int) -> None:
        self.cluster, self.in_flight = cluster, in_flight
        self.started: dict[str, str] = {}
        self.errors: list[str] = []
        self.signals = 0
        self._owed: list[tuple[float, str]] = []
        self._loop = BackgroundLoop("soak-load", self._step, every_s=0.2)

    def _unended(self) -> int:
        return query(
            self.cluster.pg_url,
            "SELECT count(*) FROM workflows WHERE parent_id IS NULL AND status = ANY(%s)",
            list(UNENDED),
        )[0][0]

    def _step(self) -> None:
        try:
            if self._unended() < self.in_flight:
                for name in LOAD:
                    status, body = _post(f"{self.cluster.url}/workflows", {"name": name, "input_data": {}})
                    if status != 201:
                        self.errors.append(f"POST /workflows {name}: {status} {body}")
                        continue
                    self.started[body["id"]] = name
                    if name == "AwaitApproval":
                        self._owed.append((time.monotonic() + random.uniform(0, 5), body["id"]))  # noqa: S311
            now = time.monotonic()
            due, self._owed = [w for t, w in self._owed if t <= now], [(t, w) for t, w in self._owed if t > now]
            for workflow_id in due:
                self._signal(workflow_id)
        except (OSError, ValueError) as e:  # the API's connection, not an answer: counted, and the load goes on
            self.errors.append(f"{type(e).__name__}: {e}")
        except psycopg2.OperationalError:  # the soak's own count refused (a full server): the next turn counts again
            pass

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop starting; send every signal still owed (a wait must not time out for the soak's sake)."""
        self._loop.stop(60)
        for _, workflow_id in self._owed:
            self._signal(workflow_id)
        self._owed = []

    def _signal(self, workflow_id: str) -> None:
        """Approve ``workflow_id`` (an ``Idempotency-Key`` of its own: sent again, it counts once)."""
        url = f"{self.cluster.url}/workflows/{workflow_id}/signals/approved"
        status, body = _post(url, {"payload": {"by": "soak"}}, key=f"approve-{workflow_id}")
        if status == 202:
            self.signals += 1
        else:
            self.errors.append(f"signal {workflow_id}: {status} {body}")


class Soak:
    """The cluster, its proxies, and the faults injected so far."""

    def __init__(self, cluster: Cluster, *, hold_s: float, seed: int) -> None:
        self.cluster, self.hold_s, self.seed = cluster, hold_s, seed
        self.links: dict[str, FaultProxy] = {}
        self.recoveries: dict[str, list[float]] = defaultdict(list)
        self.unrecovered: list[str] = []
        #: Processes this soak SIGKILLed (never taken for a live one again).
        self.killed: set[int] = set()
        #: Resident memory samples (MiB) of the engine and the worker processes.
        self.memory: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def proxies(self) -> Iterator[None]:
        for name in ENGINES:
            self.links[f"{name} → PostgreSQL"] = FaultProxy.in_front_of(self.cluster.pg_url)
        for name in (*ENGINES, *WORKERS):
            self.links[f"{name} → RabbitMQ"] = FaultProxy.in_front_of(AMQP_URL)
        for proxy in self.links.values():
            proxy.start()
        try:
            yield
        finally:
            for proxy in self.links.values():
                proxy.stop()

    def start(self) -> None:
        self.cluster.start(engines=0, workers=0)
        for name in (*ENGINES, *WORKERS):
            broker = self.links[f"{name} → RabbitMQ"].url_for(AMQP_URL).rstrip("/") + f"/?heartbeat={HEARTBEAT_S}"
            env = {"FLOW_BROKER_URL": broker}
            if name in ENGINES:
                env |= {"FLOW_DATABASE_URL": self.links[f"{name} → PostgreSQL"].url_for(self.cluster.pg_url), **SILENT}
            queue = "engine" if name in ENGINES else "activities"
            self.cluster.add(name, f"{self.cluster.prefix}.{queue}", env=env)
        poll_until(self.healthy, timeout_s=180, every_s=0.5, what="two engines at 8/8 and two workers consuming")

    def healthy(self) -> bool:
        """Every process booted; the live engines are exactly the running engine processes
        (a killed one's row looks live for a lease), holding half the partitions each; both
        workers consume."""
        children = {name: self.child(name) for name in (*ENGINES, *WORKERS)}
        if None in children.values():
            return False
        try:
            live = self.cluster.engines()
            if {engine_host_pid(e)[1] for e in live} != {children[name] for name in ENGINES}:
                return False
            half = PARTITIONS // 2
            held = sorted(h for h, _ in live.values())
            return held == [half, half] and queue_consumers(f"{self.cluster.prefix}.activities") == len(WORKERS)
        except (psycopg2.OperationalError, pika.exceptions.AMQPError):  # the soak's own look refused: not known yet
            return False

    def child(self, name: str) -> int | None:
        """The Dramatiq process of ``name`` once it has booted (None while it restarts).

        A killed one is not it: until its master reaps it, it is still listed as a zombie
        (and its engine row looks live for a lease), which made a SIGKILLed engine look
        recovered in 0.5 s."""
        proc = self.cluster.procs.procs.get(name)
        try:
            booted = proc is not None and "Worker process is ready for action" in self.cluster.procs.log(name)
        except FileNotFoundError:
            return None
        children = child_pids(proc.pid) - self.killed if booted and proc is not None else set()
        alive = {pid for pid in children if _state(pid) not in ("Z", "X", None)}
        return next(iter(alive)) if len(alive) == 1 else None

    # -- faults: each returns what it did; the recovery is timed from its return -----------

    def sigkill(self) -> str:
        name = random.choice([n for n in (*ENGINES, *WORKERS) if self.child(n)])  # noqa: S311
        pid = self.child(name) or 0
        self.killed.add(pid)
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL {name}"

    def sigstop(self) -> str:
        name = random.choice([n for n in ENGINES if self.child(n)])  # noqa: S311
        pid = self.child(name) or 0
        engine_id = next(e for e in _retry(self.cluster.engines) if engine_host_pid(e)[1] == pid)
        mine = {p for p, owner in _retry(self.cluster.owners).items() if owner == engine_id}
        stopped = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            poll_until(
                lambda: all(o not in (None, engine_id) for p, o in _retry(self.cluster.owners).items() if p in mine),
                timeout_s=LEASE_S * 20,
                every_s=0.2,
                what="the other engine to take the stopped engine's partitions",
            )
            taken = f"its {len(mine)} partitions taken over in {time.monotonic() - stopped:.1f} s"
        except PollTimeout:
            taken = f"its {len(mine)} partitions NOT taken over in {LEASE_S * 20:g} s"
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"SIGSTOP {name} ({taken}), SIGCONT"

    def _hold(self) -> float:
        """How long a latency or a black hole lasts: 3 s (absorbed by every bound) to
        ``hold_s`` (past the lease and two AMQP heartbeats: the link is given up)."""
        return random.uniform(3, max(3, self.hold_s))  # noqa: S311

    def _link(self) -> tuple[str, FaultProxy]:
        return random.choice(list(self.links.items()))  # noqa: S311

    def latency(self) -> str:
        where, proxy = self._link()
        latency_s = random.uniform(0.2, 0.5)  # noqa: S311
        hold_s = self._hold()
        proxy.slow(latency_s=latency_s, jitter_s=0.1)
        time.sleep(hold_s)
        proxy.heal()
        return f"latency {latency_s * 1000:.0f} ± 100 ms on {where} for {hold_s:.0f} s"

    def black_hole(self) -> str:
        where, proxy = self._link()
        hold_s = self._hold()
        proxy.black_hole()
        time.sleep(hold_s)
        proxy.heal()
        return f"black hole on {where} for {hold_s:.0f} s"

    def reset(self) -> str:
        where, proxy = self._link()
        return f"reset {proxy.reset()} connection(s) of {where}"

    def inject(self, kind: str) -> None:
        fault: Callable[[], str] = getattr(self, kind)
        what = fault()
        ended = time.monotonic()
        try:
            poll_until(self.healthy, timeout_s=180, every_s=0.25, what="recovery")
        except PollTimeout:
            self.unrecovered.append(f"{time.strftime('%H:%M:%S')} {what}")
            print(f"{time.strftime('%H:%M:%S')} {what}: NOT recovered within 180 s", flush=True)
            return
        took_s = time.monotonic() - ended
        self.recoveries[kind].append(took_s)
        print(f"{time.strftime('%H:%M:%S')} {what}: recovered in {took_s:.1f} s", flush=True)

    def sample_memory(self) -> None:
        """Record each process's resident memory (MiB) now: a leak shows as growth across the run."""
        for name in (*ENGINES, *WORKERS):
            pid = self.child(name)
            with contextlib.suppress(OSError, StopIteration, ValueError):
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                rss_kib = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
                self.memory[name.split("-")[0]].append(rss_kib / 1024)

    def heal_all(self) -> None:
        for proxy in self.links.values():
            proxy.heal()
        for name in ENGINES:
            if pid := self.child(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


def _recovery(times: list[float]) -> str:
    if not times:
        return "–"
    return f"median {statistics.median(times):.1f} s, max {max(times):.1f} s"


def report(soak: Soak, load: Load, problems: dict[str, list], minutes: float, injected: dict[str, int]) -> bool:
    """Print the figures; True when nothing broke."""
    pg = soak.cluster.pg_url
    by_status = dict(_retry(lambda: query(pg, "SELECT status, count(*) FROM workflows GROUP BY 1 ORDER BY 1")))
    children = _retry(lambda: query(pg, "SELECT count(*) FROM workflows WHERE parent_id IS NOT NULL"))[0][0]
    twice = {key: len(rows) for key, rows in problems.items() if key.endswith("_twice") and rows}
    counts = {
        "lost": len(problems["lost"]),
        "stuck": len(problems["stuck"]) + len(problems["outbox"]),
        "decided twice": sum(twice.values()),
        "slots held at the end": len(problems["slots_held"]),
        "ended wrongly": len(problems["ended_wrongly"]),
        "nobody started": len(problems["unstarted"]),
        "faults not recovered from": len(soak.unrecovered),
    }
    logs = soak.cluster.procs.log_dir.glob("*.log")
    tracebacks = sum(unhandled_errors(log.read_text(errors="replace")) for log in logs)
    print(f"\nsoak: {minutes:g} min, seed {soak.seed}")
    print(f"workflows started: {len(load.started)} (+ {children} children); ended by status: {by_status}")
    print(f"signals sent: {load.signals}; API errors seen by the load: {len(load.errors)}")
    for kind in KINDS:
        print(f"  {kind:<10} injected {injected.get(kind, 0):>3}, recovery {_recovery(soak.recoveries[kind])}")
    print(f"restarts: {soak.cluster.restarts}; commits refused by fencing: {_retry(soak.cluster.refused_commits)}")
    for role, samples in soak.memory.items():
        print(f"{role} RSS: first {samples[0]:.0f} MiB, last {samples[-1]:.0f} MiB, peak {max(samples):.0f} MiB")
    print(f"tracebacks in the processes' logs (activities' own left out): {tracebacks}")
    print(", ".join(f"{what} {n}" for what, n in counts.items()) + (f" ({twice})" if twice else ""))
    for key, rows in problems.items():
        if rows:
            print(f"  {PROBLEMS[key]}: {rows[:10]}")
    for line in soak.unrecovered + load.errors[:10]:
        print(f"  {line}")
    return not any(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30, help="how long the load runs (default 30)")
    parser.add_argument("--interval", type=float, default=20, help="mean seconds between two faults (default 20)")
    parser.add_argument("--hold", type=float, default=25, help="longest latency or black hole, s (default 25)")
    parser.add_argument("--in-flight", type=int, default=60, help="top-level workflows kept running (default 60)")
    parser.add_argument("--faults", default=",".join(KINDS), help=f"kinds to draw from (default {','.join(KINDS)})")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here (default: removed)")
    args = parser.parse_args()
    kinds = args.faults.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    random.seed(seed)
    try:
        check_services()
    except ServicesUnavailable as e:
        raise SystemExit(f"python -m bench.soak needs the local PostgreSQL and RabbitMQ: {e}") from None
    with contextlib.ExitStack() as stack:
        pg_url, prefix = stack.enter_context(new_database()), stack.enter_context(new_queue_prefix())
        base = args.log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(base, pg_url, prefix, FAULT_DEFINITIONS, activity_packages=ACTIVITY_PACKAGE)
        soak = Soak(cluster, hold_s=args.hold, seed=seed)
        stack.enter_context(soak.proxies())
        stack.callback(cluster.stop, sig=signal.SIGKILL)
        soak.start()
        load = Load(cluster, args.in_flight)
        load.start()
        injected: dict[str, int] = defaultdict(int)
        deadline = time.monotonic() + args.minutes * 60
        print(f"{time.strftime('%H:%M:%S')} soak for {args.minutes:g} min, seed {seed}, logs in {base}", flush=True)
        try:
            while (now := time.monotonic()) < deadline:
                time.sleep(min(deadline - now, args.interval * random.uniform(0.5, 1.5)))  # noqa: S311
                if time.monotonic() >= deadline:
                    break
                kind = random.choice(kinds)  # noqa: S311
                injected[kind] += 1
                soak.sample_memory()
                soak.inject(kind)
        finally:
            soak.heal_all()
            load.stop()
        print(f"{time.strftime('%H:%M:%S')} load stopped; {len(load.started)} started; waiting to settle", flush=True)
        problems = _retry(lambda: find_problems(pg_url, load.started, FAULT_EXPECTED, timeout_s=600))
        ok = report(soak, load, problems, args.minutes, injected)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
