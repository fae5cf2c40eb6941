"""Libero Flow's processes as a user runs them: ``dramatiq flow.actors`` engines and
workers, the API under gunicorn, ``flow migrate``; each in its own process group (a
stop reaches its children), logging to its own file, and dying with the process that
started it (a test run killed with SIGTERM leaves nothing behind)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from flow.loops import poll_until

#: The source tree the processes run from (their working directory and ``PYTHONPATH``).
ROOT = Path(__file__).resolve().parents[2]
#: Where this interpreter's console scripts (``flow``, ``dramatiq``, ``gunicorn``) are.
VENV_BIN = Path(sys.executable).parent


#: ``prctl(2)``'s option that asks Linux to signal a process when its parent dies.
PR_SET_PDEATHSIG = 1
#: libc's ``prctl``, looked up here, in the parent: the child calls it between fork and
#: exec, where nothing that may take a lock (an import, a lookup) should run.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None


def die_with_parent(then: Callable[[], object] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets SIGTERM when the
    process that starts it dies, however it dies (a pytest run killed with SIGTERM or
    SIGKILL runs no finalizer, and the child is in a session of its own, out of reach of
    a signal to the run's process group). SIGTERM, not SIGKILL, so that a ``dramatiq`` or
    ``gunicorn`` master stops its own children too. ``then`` runs after, in the child.

    Linux only (elsewhere only ``then`` runs). Linux sends the signal when the starting
    *thread* ends, so a process started from another thread than the main one (the
    :class:`~flow.testing.Cluster` supervisor restarting one) is left out: it would be
    stopped when that thread ends, not when the test run does.
    """
    parent = os.getpid()
    on_main_thread = threading.current_thread() is threading.main_thread()

    def preexec() -> None:
        if _prctl is not None and on_main_thread:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl: no signal will come
                os.kill(os.getpid(), signal.SIGTERM)
        if then is not None:
            then()

    return preexec


#: Every process a :class:`Processes` started in this process and has not stopped yet:
#: the process groups :func:`kill_on_sigterm`'s handler kills.
_STARTED: set[subprocess.Popen[bytes]] = set()


def kill_on_sigterm() -> None:
    """Make a SIGTERM to this process (a test run killed) SIGKILL the process group of
    every process a :class:`Processes` started and has not stopped, then end this process
    with the SIGTERM as before. :func:`die_with_parent` alone is not enough: its SIGTERM
    asks for a graceful stop (a ``dramatiq`` worker finishes the activity it runs, for up
    to its 10 minutes of shutdown timeout; gunicorn waits up to 30 s for its requests: one
    was still there 10 s after its run was killed), and a process the
    :class:`~flow.testing.Cluster`'s supervisor restarted from its thread gets no signal.
    A SIGKILL of the run still relies on :func:`die_with_parent`. Main thread only (where
    Python runs signal handlers); ``tests/conftest.py`` calls it when pytest starts."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: object) -> None:
        try:
            for proc in list(_STARTED):
                if proc.returncode is None:  # not reaped: its pid, and so its group's id, is still its own
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)  # its own group: its children too
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux; else its default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's
    ephemeral range: a port the kernel handed out (bind to port 0) is in that range, and
    any outgoing connection (a test's pooled database connection, a broker's) could take
    it before the server meant for it binds, which then never starts (the API's health
    check waited 120 s for it, twice in two suite runs)."""
    low = _ephemeral_ports()[0]
    for _ in range(100):
        port = random.randrange(20_000, low) if low > 20_001 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port below the ephemeral range after 100 tries")


def python_path(root: Path, env: dict[str, str]) -> str:
    """The ``PYTHONPATH`` of a process run from the source tree ``root``: the tree first,
    then the ``PYTHONPATH`` that ``env`` gives (a user's activity packages)."""
    return os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))


def migrate(env: dict[str, str], *, root: Path = ROOT) -> None:
    """``flow migrate`` with ``env`` (its ``FLOW_`` settings), as a deployment runs it
    first; ``root``: the source tree (the release) whose migrations it applies."""
    done = subprocess.run(
        [str(VENV_BIN / "flow"), "migrate"],
        env={
            **os.environ,
            **env,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": python_path(root, env),
        },
        cwd=root,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flow migrate failed ({done.returncode}): {done.stderr}")


class Processes:
    """Named OS processes, each logging to ``log_dir/<name>.log``; stopped with :meth:`stop_all`.

    They run from ``root`` (their working directory, and the head of ``PYTHONPATH``, before
    any ``PYTHONPATH`` of ``env``) with this interpreter's libraries: another release's
    source tree, checked out, runs as that release (tests/integration/test_rolling_upgrade.py).
    """

    def __init__(self, log_dir: Path, env: dict[str, str], *, root: Path = ROOT) -> None:
        self.log_dir = log_dir
        self.env = env
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        given = {**self.env, **(env or {})}
        proc = subprocess.Popen(
            argv,
            cwd=self.root,
            env={**os.environ, **given, "PYTHONPATH": python_path(self.root, given)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a stop reaches its children
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only a prepared C call runs there
        )
        self.procs[name] = proc
        _STARTED.add(proc)
        return proc

    def dramatiq(
        self, name: str, *queues: str, threads: int = 4, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``dramatiq flow.actors`` with one worker process, consuming ``queues`` (all if none)."""
        args = [str(VENV_BIN / "dramatiq"), "flow.actors", "--processes", "1", "--threads", str(threads)]
        if queues:
            args += ["--queues", *queues]
        return self.start(name, *args, env=env)

    def gunicorn(
        self, name: str, port: int, *, workers: int = 2, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """The API as deployed: gunicorn with ``api/gunicorn_conf.py``, serving ``api.app:create_app()``."""
        return self.start(
            name,
            str(VENV_BIN / "gunicorn"),
            "--config",
            "python:api.gunicorn_conf",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "api.app:create_app()",
            env=env,
        )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int | None:
        """Send ``sig`` to ``name``'s process group; SIGKILL it if it has not exited after ``timeout_s``."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(5)
        finally:
            _STARTED.discard(proc)

    def stop_all(self, timeout_s: float = 15, *, sig: int = signal.SIGTERM) -> None:
        """Stop every process at once: ``sig`` to each group first, then wait for them
        together (one at a time, each stop's wait came on top of the last: a cluster's
        teardown took the sum of its processes' shutdowns); SIGKILL what still runs after
        ``timeout_s``. A test's teardown passes SIGKILL: nothing after it looks at the
        processes' work, and their graceful shutdowns cost 5 to 12 s a cluster."""
        procs = [self.procs.pop(name) for name in list(self.procs)]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            finally:
                _STARTED.discard(proc)


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - a local test URL
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_http(url: str, *, timeout_s: float = 30) -> None:
    """Wait until ``GET url`` answers 200."""
    poll_until(lambda: _answers_200(url), timeout_s=timeout_s, every_s=0.2, what=f"{url} to answer 200")


@contextlib.contextmanager
def flow_up(base: Path, env: dict[str, str]) -> Iterator[str]:
    """``flow up`` (the embedded default: API, engine and workers in one process) on a
    free port, as a user runs it; yields its URL. Stopped with SIGINT (Ctrl-C)
    afterwards; its output is in ``base/up.log``."""
    with flow_up_process(base, env) as (url, _):
        yield url


@contextlib.contextmanager
def flow_up_process(
    base: Path, env: dict[str, str], *, log: str = "up.log"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`flow_up`, yielding its process too (a test may kill it: stopping a process
    that is gone already does nothing); its output is in ``base/<log>``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(base / log, "wb") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flow.cli", "up", "--port", str(port)],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=output,
            stderr=output,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only a prepared C call runs there
        )
        try:
            poll_until(
                lambda: proc.poll() is not None or _answers_200(f"{url}/health"),
                timeout_s=30,
                what="flow up to serve",
            )
            if proc.poll() is not None:
                raise RuntimeError(f"flow up exited with {proc.returncode}: {(base / log).read_text()}")
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"flow up did not stop within 30 s of SIGINT; see {base / log}") from None


#: The warning an activity's own exception is logged under (with its traceback): the
#: attempt's outcome, reported like any other, not an error of Libero Flow.
_ACTIVITY_RAISED = re.compile(r" do_activity raised\b")


def unhandled_errors(log: str) -> int:
    """How many tracebacks ``log`` holds, leaving out those of activities that raised
    (an activity of :mod:`flow.testing.activities` raises on purpose)."""
    lines = log.splitlines()
    return sum(
        1
        for index, line in enumerate(lines)
        if line.startswith("Traceback") and not (index and _ACTIVITY_RAISED.search(lines[index - 1]))
    )


def child_pids(pid: int) -> set[int]:
    """Direct children of ``pid``, read from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.add(int(stat.parent.name))
    return children
