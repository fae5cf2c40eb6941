"""PostgreSQL and RabbitMQ of one's own: a fresh database and a queue prefix per run,
both removed afterwards, so that runs never see each other's data."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import psycopg2

from flow.errors import FlowError

#: The server every test and benchmark database is created on (``FLOW_TEST_PG``).
PG_DSN = os.environ.get("FLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: The RabbitMQ every test and benchmark queue is declared on (``FLOW_TEST_AMQP``).
AMQP_URL = os.environ.get("FLOW_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


class ServicesUnavailable(FlowError):
    """Raised by :func:`check_services` when PostgreSQL or RabbitMQ does not answer."""


def _admin() -> psycopg2.extensions.connection:
    conn = psycopg2.connect(PG_DSN, connect_timeout=3)
    conn.autocommit = True
    return conn


def check_services() -> None:
    """Raise :class:`ServicesUnavailable` unless PostgreSQL and RabbitMQ both answer."""
    checks = {
        "PostgreSQL": lambda: _admin().close(),
        "RabbitMQ": lambda: pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close(),
    }
    for name, check in checks.items():
        try:
            check()
        except Exception as e:  # any failure to connect means the service is not usable
            raise ServicesUnavailable(f"{name} is not reachable ({e})") from e


@contextlib.contextmanager
def new_database() -> Iterator[str]:
    """A fresh PostgreSQL database of our own; yields its URL and drops it afterwards."""
    name = f"flowtest_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextlib.contextmanager
def new_queue_prefix(*, pools: tuple[str, ...] = ("gpu",)) -> Iterator[str]:
    """A queue prefix (``FLOW_QUEUE_PREFIX``) of our own; every queue under it is
    deleted afterwards (those of the worker ``pools`` too)."""
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
        pool_queues = [f"activities.{pool}" for pool in pools]
        for base in ("engine", "activities", "floor_engine", "floor_worker", *partitions, *pool_queues):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{prefix}.{base}{suffix}")
        for key in ("workflow_starter", f"starter_{prefix}"):
            channel.queue_delete(f"{prefix}.{key}")
            channel.queue_delete(f"{prefix}.{key}.dead")
        channel.queue_delete(f"{prefix}.celery")
        channel.exchange_delete(f"{prefix}.cancellations")  # the workers' cancel notices
        connection.close()


def queue_depth(queue: str) -> int:
    """Messages ready in ``queue`` (not counting unacknowledged ones)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def queue_consumers(queue: str) -> int:
    """Consumers of ``queue``; 0 while it does not exist yet."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
        return 0
    finally:
        if connection.is_open:
            connection.close()


def query(pg_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one SQL statement on a connection of its own.

    For checkers that read what a run left behind: they read the tables directly
    rather than through the code under test.
    """
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` (root here, no sudo; about 1.5 s a call) and return its output."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def rabbitmq_alarms() -> str:
    """RabbitMQ's alarms in force, as Erlang prints them (``[]``: none)."""
    return _rabbitmqctl("eval", "rabbit_alarm:get_alarms().")


@contextlib.contextmanager
def memory_alarm() -> Iterator[Callable[[bool], None]]:
    """A switch for RabbitMQ's memory alarm, which blocks every publisher on the broker
    (everyone's tests too: keep it on for seconds). ``switch(True)`` sets the memory high
    watermark to 0 (the alarm goes off at once), ``switch(False)`` restores the watermark
    read on entry; it is restored on the way out whatever happened (a test killed with
    SIGKILL cannot: ``rabbitmqctl set_vm_memory_high_watermark 0.4`` by hand)."""
    previous = _rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    # A relative watermark prints as a float ("0.4"), an absolute one as {absolute,Bytes}.
    absolute = re.fullmatch(r"\{absolute,(\d+)\}", previous)
    restore = ["absolute", absolute.group(1)] if absolute else [previous]
    float(restore[-1])  # refuse to go on with a value it could not restore

    state = {"on": False}

    def switch(on: bool) -> None:
        _rabbitmqctl("set_vm_memory_high_watermark", *(["0"] if on else restore))
        state["on"] = on

    try:
        yield switch
    finally:
        if state["on"]:
            switch(False)
