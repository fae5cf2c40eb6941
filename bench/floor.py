"""The floor: raw Dramatiq doing what one workflow step needs, and nothing else.

Per step: engine queue -> worker queue -> engine queue (two hops), with publisher
confirms and one PostgreSQL commit, exactly the I/O Libero Flow cannot avoid.
``BENCH_FLOOR_BARE=1`` drops the confirms and the commit, for reference.

Loaded by ``dramatiq bench.floor``; the bench starts those processes itself.
"""

from __future__ import annotations

import os
import time

import dramatiq
import psycopg2
from dramatiq.brokers.rabbitmq import RabbitmqBroker

PREFIX = os.environ.get("BENCH_PREFIX", "bench")
BARE = os.environ.get("BENCH_FLOOR_BARE") == "1"
ENGINE_QUEUE, WORKER_QUEUE = f"{PREFIX}.floor_engine", f"{PREFIX}.floor_worker"

broker = RabbitmqBroker(
    url=os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/"), confirm_delivery=not BARE
)
dramatiq.set_broker(broker)

_connections: dict[int, object] = {}


def _db():
    import threading

    key = threading.get_ident()
    if key not in _connections:
        _connections[key] = psycopg2.connect(os.environ["BENCH_PG"])
    return _connections[key]


def _commit(sql: str, args: tuple) -> None:
    conn = _db()
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(sql, args)
    conn.commit()  # type: ignore[attr-defined]


@dramatiq.actor(actor_name="bench.floor_step", queue_name=ENGINE_QUEUE, max_retries=0)
def floor_step(chain_id: str, step: int, steps: int) -> None:
    if not BARE:
        _commit("UPDATE floor_chains SET step = %s WHERE id = %s", (step, chain_id))
    if step == steps:
        _commit("UPDATE floor_chains SET finished = %s WHERE id = %s", (time.time(), chain_id))
        return
    floor_work.send(chain_id, step + 1, steps)


@dramatiq.actor(actor_name="bench.floor_work", queue_name=WORKER_QUEUE, max_retries=0)
def floor_work(chain_id: str, step: int, steps: int) -> None:
    floor_step.send(chain_id, step, steps)
