"""The same 10-step sequence as a Celery 5 ``chain`` of no-op tasks on the same RabbitMQ,
with late acks; the last task records when the chain finished, in PostgreSQL."""

from __future__ import annotations

import os
import threading
import time

import psycopg2
from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/"))
app.conf.update(
    task_acks_late=True,
    task_default_queue=f"{os.environ.get('BENCH_PREFIX', 'bench')}.celery",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(chain_id: str) -> str:
    return chain_id


_local = threading.local()


@app.task(name="bench.done")
def done(chain_id: str) -> None:
    if not hasattr(_local, "conn"):
        _local.conn = psycopg2.connect(os.environ["BENCH_PG"])
    with _local.conn, _local.conn.cursor() as cur:
        cur.execute("UPDATE floor_chains SET finished = %s WHERE id = %s", (time.time(), chain_id))
