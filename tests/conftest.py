"""Fixtures shared by every test folder."""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pykka
import pytest

from flow.loops import poll_until
from flow.settings import Settings
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from flow.testing.processes import kill_on_sigterm

ROOT = Path(__file__).resolve().parent.parent

#: Folders of the fast tier: in-process tests that start no process, need no service
#: and wait on nothing (tests/embedded, tests/api, tests/ui and tests/deploy start
#: flows, subprocesses, Chromium or the deployment, and wait on them).
FAST_FOLDERS = ("unit",)

#: Each test file's wall seconds in a recent whole run (``python -m tests.weights``): the
#: suite collects the heaviest files first, so that pytest-xdist (``--dist loadfile
#: --no-loadscope-reorder``, project_tests.sh) starts the long ones first and the short
#: ones fill the end, instead of a 3-minute file starting last and running alone.
FILE_WEIGHTS: dict[str, int] = json.loads((ROOT / "tests" / "weights.json").read_text())


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM to this run kills the processes the harness started (``kill_on_sigterm``)."""
    kill_on_sigterm()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tier every test from where it lives and what it uses, so that no test file says its tier:

    - ``exclusive``: marked so by the test itself (tests/faults/test_service_restarts.py):
      it restarts PostgreSQL or RabbitMQ, or changes the broker's settings, which every
      test beside it shares: run alone, after the rest (project_tests.sh's phase 2); also
      ``services``. The other fault tests kill only their own cluster's processes and run
      in the parallel phase;
    - ``services``: uses the ``services`` fixture (real PostgreSQL and RabbitMQ);
    - ``fast``: tests/unit without services, but for the few marked ``slow`` (stress tests
      that spend seconds of CPU on purpose): ``pytest -m fast`` (``./project_tests.sh --fast``).
    """
    for item in items:
        folder = Path(item.path).relative_to(ROOT / "tests").parts[0]
        uses_services = "services" in getattr(item, "fixturenames", ()) or item.get_closest_marker("services")
        if item.get_closest_marker("exclusive"):
            item.add_marker(pytest.mark.services)
        elif uses_services:
            item.add_marker(pytest.mark.services)
        elif folder in FAST_FOLDERS and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.fast)
    items.sort(key=lambda item: -FILE_WEIGHTS.get(str(Path(item.path).relative_to(ROOT)), 0))


_parse = ast.parse


def _parse_asked_again(source: Any, *args: Any, **kwargs: Any) -> Any:
    """``ast.parse``, asked again when CPython 3.11 raises "AST constructor recursion depth
    mismatch": its AST constructor's depth count, kept per interpreter, can be upset in a
    threaded process (python/cpython#106905, seen there "rarely in a threaded application").
    Here a Dramatiq thread of an embedded flow was formatting a traceback at the time (3.11's
    tracebacks parse the failing line); the suite's AST rules met it once in a run."""
    for _ in range(5):
        try:
            return _parse(source, *args, **kwargs)
        except SystemError as e:
            if "recursion depth mismatch" not in str(e):
                raise
    return _parse(source, *args, **kwargs)


ast.parse = _parse_asked_again


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With ``FLOW_TEST_CPU_LOG=<file>``, append each test's CPU seconds (its pytest process and
    the children it reaped: clusters, CLIs) and wall seconds to the file, to find what a
    suite on a busy machine spends its CPU on (wall time there measures the machine)."""
    log = os.environ.get("FLOW_TEST_CPU_LOG")
    if not log:
        return (yield)
    before, started = os.times(), time.monotonic()
    try:
        return (yield)
    finally:
        after = os.times()
        cpu = sum(after[:4]) - sum(before[:4])
        with open(log, "a") as out:
            out.write(f"{cpu:.2f} {time.monotonic() - started:.2f} {item.nodeid}\n")


@pytest.fixture(scope="session")
def services() -> None:
    """PostgreSQL and RabbitMQ are reachable: skipped loudly outside CI, failed in CI."""
    from tests.services import require_services

    require_services()


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 10.0, every_s: float = 0.05, what: str = "") -> Any:
    """:func:`flow.loops.poll_until` with the suite's defaults."""
    return poll_until(condition, timeout_s=timeout_s, every_s=every_s, what=what)


@contextmanager
def configured_logging(settings: Settings) -> Iterator[io.StringIO]:
    """The root logger as an entry point configures it (``configure_logging``), writing
    to the string yielded instead of stderr; put back as it was afterwards."""
    from flow.process.logs import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", stream)
        configure_logging(settings)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


class _StatusHandler(BaseHTTPRequestHandler):
    """``GET /status/<code>`` answers with that status code, ``GET /redirect?to=<url>``
    redirects there (302); counts requests per path."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).hits[self.path] = type(self).hits.get(self.path, 0) + 1
        if self.path.startswith("/redirect?to="):
            from urllib.parse import unquote

            self.send_response(302)
            self.send_header("Location", unquote(self.path.split("=", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            code = int(self.path.rsplit("/", 1)[-1])
        except ValueError:
            code = 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """A local HTTP server for DoAnotherThingActivity: nothing in the tests reaches the internet."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def definitions_dir(tmp_path: Path, http_server: str) -> Path:
    return write_definitions(tmp_path / "workflows", sample_definitions(http_server))


@pytest.fixture
def embedded_settings(tmp_path: Path, definitions_dir: Path) -> Settings:
    return Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True)
