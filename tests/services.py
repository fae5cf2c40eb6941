"""Helpers for tests on real PostgreSQL and RabbitMQ: own database and queue names per
run, torn down after, and real processes.

Outside CI a missing service skips these tests with a loud message; with ``CI`` set
it fails them, so a green CI run always means the services were really exercised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pika
import psycopg2
import pytest
import requests

from tests.conftest import ROOT

PG_DSN = os.environ.get("FLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("FLOW_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
VENV_BIN = Path(sys.executable).parent


def _require(name: str, check) -> None:
    try:
        check()
    except Exception as e:  # any failure to connect means the service is not usable
        message = f"{name} is not reachable ({e}); the real-service tests cannot run"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI requires it", pytrace=False)
        warnings.warn(message, stacklevel=1)
        sys.stderr.write(f"\n\n!!! SKIPPING real-service tests: {message} !!!\n\n")
        pytest.skip(message)


def _pg() -> psycopg2.extensions.connection:
    conn = psycopg2.connect(PG_DSN, connect_timeout=3)
    conn.autocommit = True
    return conn


def require_services() -> None:
    """Skip (outside CI) or fail (in CI) unless PostgreSQL and RabbitMQ answer."""
    _require("PostgreSQL", lambda: _pg().close())
    _require("RabbitMQ", lambda: pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close())


@contextlib.contextmanager
def new_database() -> Iterator[str]:
    """A fresh PostgreSQL database of our own, dropped afterwards."""
    name = f"flowtest_{uuid.uuid4().hex[:10]}"
    conn = _pg()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = _pg()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextlib.contextmanager
def new_queue_prefix() -> Iterator[str]:
    """A queue prefix of our own; every queue under it is deleted afterwards."""
    prefix = f"flowtest_{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        # Dramatiq queues (each with its delay and dead-letter queues) of Libero Flow
        # and of the benchmark's raw-Dramatiq floor; the start-message queues under
        # either routing key the tests use; the benchmark's Celery queue.
        partitions = [f"engine.{p}" for p in range(64)]
        for base in ("engine", "activities", "floor_engine", "floor_worker", *partitions):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{prefix}.{base}{suffix}")
        for key in ("workflow_starter", f"starter_{prefix}"):
            channel.queue_delete(f"{prefix}.{key}")
            channel.queue_delete(f"{prefix}.{key}.dead")
        channel.queue_delete(f"{prefix}.celery")
        connection.close()


def queue_depth(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Real OS processes for a test, each logging to its own file; all stopped at teardown."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **(env or {}), "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a stop reaches its children
        )
        self.procs[name] = proc
        return proc

    def dramatiq(
        self, name: str, *queues: str, threads: int = 4, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        args = [str(VENV_BIN / "dramatiq"), "flow.actors", "--processes", "1", "--threads", str(threads)]
        if queues:
            args += ["--queues", *queues]
        return self.start(name, *args, env=env)

    def gunicorn(self, name: str, port: int, *, workers: int = 2) -> subprocess.Popen[bytes]:
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
        )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int | None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def wait_http(url: str, *, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout_s} s")


def child_pids(pid: int) -> set[int]:
    """Direct children of ``pid``, read from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.add(int(stat.parent.name))
    return children
