"""The worker pools a ``dramatiq flow.actors`` process serves: their queues declared on
its broker before the worker boots (docs/design.md, "Worker pools").

Dramatiq's worker consumes only the queues its broker has declared that its whitelist
(``--queues``) lets through: declaring is what an actor's module does for the queue of
each actor, and ``run_activity`` is declared on the default pool's queue only. A
process started with ``--queues flow.activities.gpu`` would otherwise consume nothing
and the gpu pool's attempts would wait for ever. So every pool queue in the whitelist
(see :func:`flow.core.pools.pool_of`) is declared here; the messages on it name
``run_activity``, which the worker finds by its name whatever queue they came from.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from flow.core.pools import DEFAULT_POOL, POOL_RULE, is_pool_name, pool_of, pool_queues
from flow.errors import ConfigurationError
from flow.settings import Settings

logger = logging.getLogger(__name__)


def served_queues(settings: Settings) -> tuple[str, ...]:
    """The queues a worker started without ``--queues`` serves: those of
    ``FLOW_WORKER_POOLS``, the default pool's when it is unset. Raises
    :class:`ConfigurationError` naming the variable for a name no pool can have."""
    for pool in settings.worker_pools:
        if not is_pool_name(pool):
            raise ConfigurationError(f"FLOW_WORKER_POOLS: {pool!r} is not a worker pool: {POOL_RULE}")
    return pool_queues(settings.activity_queue, settings.worker_pools or (DEFAULT_POOL,))


class WorkerPools(dramatiq.Middleware):
    """Declares the pool queues of the worker's whitelist when it boots."""

    def __init__(self, activity_queue: str) -> None:
        self.activity_queue = activity_queue

    def __repr__(self) -> str:
        return f"<WorkerPools {self.activity_queue}>"

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Before the boot: Dramatiq's worker adds a consumer for each queue declared by
        # then (its _WorkerMiddleware), and for each declared later.
        pools = []
        for queue in sorted(worker.consumer_whitelist or ()):
            pool = pool_of(self.activity_queue, queue)
            if pool is not None:
                broker.declare_queue(queue)
                pools.append(pool)
        if pools and pools != [DEFAULT_POOL]:
            logger.info("serving worker pools %s", ", ".join(pools))
