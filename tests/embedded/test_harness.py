"""The harness's processes (:mod:`flow.testing.processes`) die with the test run that
started them, however it is stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.testing import ROOT, Processes
from tests.conftest import wait_for

#: A test that starts the API under gunicorn (a master and its 2 workers) as the cluster
#: does, writes their pids, and then runs until it is killed: by itself, or on a
#: pytest-xdist worker as project_tests.sh runs it (the worker must go too).
STARTS_THE_API = """
import os, time
from pathlib import Path
from flow.testing import Processes, child_pids, free_port, migrate, wait_http

def test_starts_the_api_and_runs_until_killed(tmp_path):
    env = {"FLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'flow.db'}", "FLOW_DEFINITIONS_DIR": str(tmp_path)}
    procs = Processes(tmp_path, env)
    migrate(procs.env)
    port = free_port()
    master = procs.gunicorn("api", port, workers=2)
    wait_http(f"http://127.0.0.1:{port}/health", timeout_s=120)
    pids = [master.pid, *child_pids(master.pid)]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pids.append(os.getpid())  # the worker that runs this test
    written = Path(os.environ["PIDS_TO"] + ".tmp")
    written.write_text(" ".join(map(str, pids)))
    written.rename(os.environ["PIDS_TO"])
    time.sleep(600)  # the outer test kills this run long before
"""

#: A test that starts, through the harness, what a graceful stop does not end: a process
#: that ignores SIGTERM (as a ``dramatiq`` worker finishing an activity does, for up to
#: 10 minutes) with a child of its own, and a process started from another thread (as the
#: cluster's supervisor restarts one), which gets no signal when the run dies.
STARTS_STUBBORN_PROCESSES = """
import os, sys, threading, time
from pathlib import Path
from flow.testing import Processes, child_pids

STUBBORN = (
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.fork(); time.sleep(600)"
)

def test_starts_processes_and_runs_until_killed(tmp_path):
    procs = Processes(tmp_path, {})
    stubborn = procs.start("stubborn", sys.executable, "-c", STUBBORN)
    started = []
    thread = threading.Thread(
        target=lambda: started.append(procs.start("restarted", sys.executable, "-c", "import time; time.sleep(600)"))
    )
    thread.start()
    thread.join()
    while not child_pids(stubborn.pid):
        time.sleep(0.05)
    pids = [stubborn.pid, *child_pids(stubborn.pid), started[0].pid]
    written = Path(os.environ["PIDS_TO"] + ".tmp")
    written.write_text(" ".join(map(str, pids)))
    written.rename(os.environ["PIDS_TO"])
    time.sleep(600)  # the outer test kills this run long before
"""


def own_environment() -> dict[str, str]:
    """This environment without what pytest (and pytest-xdist, when it runs this test)
    set for this run: the run started here is a run of its own."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}


def alive(pid: int) -> bool:
    """``pid`` runs (exists and is not a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def inner_run(
    tmp_path: Path, source: str, *args: str, started_within_s: float
) -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """A pytest run of its own over ``source`` (written to tmp_path), once it has written the
    pids it started to ``PIDS_TO``; whatever the test asserts, neither the run nor those
    processes outlive it."""
    (tmp_path / "test_inner.py").write_text(source)
    pids_file = tmp_path / "pids"
    with open(tmp_path / "pytest.log", "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "test_inner.py"],
            cwd=tmp_path,
            env={**own_environment(), "PIDS_TO": str(pids_file), "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pids: list[int] = []
    try:
        wait_for(
            lambda: pids_file.exists() or run.poll() is not None, timeout_s=started_within_s, what="the run's processes"
        )
        assert pids_file.exists(), (tmp_path / "pytest.log").read_text()
        pids += [int(pid) for pid in pids_file.read_text().split()]
        yield run, pids
    finally:
        if run.poll() is None:
            run.kill()
        for pid in pids:  # a failed run must not leave them either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["serial", "xdist"])
def test_a_test_run_killed_with_sigterm_leaves_no_process_behind(tmp_path, workers):
    with inner_run(tmp_path, STARTS_THE_API, *workers, started_within_s=180) as (run, pids):
        # gunicorn's master and 2 workers (and the xdist worker)
        assert len(pids) == 3 + bool(workers) and all(alive(pid) for pid in pids)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == -signal.SIGTERM  # killed: no fixture, no finally ran
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout_s=60, what="the run's processes gone")


def test_a_process_started_from_another_thread_outlives_that_thread(tmp_path):
    """The cluster's supervisor restarts processes from its own thread: Linux would stop
    them when that thread ends, had they asked to die with it."""
    procs = Processes(tmp_path, {})
    started = []
    thread = threading.Thread(
        target=lambda: started.append(procs.start("sleeper", sys.executable, "-c", "import time; time.sleep(60)"))
    )
    thread.start()
    thread.join()
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # it runs on: nothing stopped it
            started[0].wait(2)
    finally:
        procs.stop_all()


def test_a_test_run_killed_with_sigterm_kills_what_a_graceful_stop_would_not_end(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure  # the suite's own hook\n")
    with inner_run(tmp_path, STARTS_STUBBORN_PROCESSES, started_within_s=120) as (run, pids):
        assert len(pids) == 3 and all(alive(pid) for pid in pids)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == -signal.SIGTERM  # it still dies of the SIGTERM
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout_s=30, what="the run's processes gone")
