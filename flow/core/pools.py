"""Worker pools: the names a definition's ``queue`` key and ``flow worker --pool`` use,
and the queue each one is.

A pool is a set of workers that serve one queue: an activity whose definition entry
says ``"queue": "gpu"`` runs only on workers that consume ``<prefix>.activities.gpu``.
The pool ``default`` is ``<prefix>.activities`` itself, the queue every other activity
goes to; a step's ``queue`` is None there, so a definition that says
``"queue": "default"`` and one that says nothing route alike.

Pure: names and strings only; what declares and consumes the queues is in the shells
(:mod:`flow.worker.pools`, :mod:`flow.process.embedded`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: The pool of the activities whose definition names none: ``<prefix>.activities``.
DEFAULT_POOL = "default"
#: A pool's name: lowercase, so that it can never end a queue name as Dramatiq's own
#: ``.DQ`` and ``.XQ`` suffixes do; short, so that ``<prefix>.activities.<pool>.DQ``
#: stays a readable queue name.
POOL_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
#: What a bad name is told (definition problems, ``flow worker``, ``FLOW_WORKER_POOLS``).
POOL_RULE = "a pool name is 1 to 40 lowercase letters, digits, '_' or '-', starting with a letter"

_POOL = re.compile(POOL_PATTERN.rstrip("$") + r"\Z")  # "$" would also match before a final newline


#: RabbitMQ's ``x-max-priority`` of every pool's queue: one level per priority of a start
#: request (RabbitMQ keeps a queue per level; few levels are cheap).
MAX_PRIORITY = 5
#: A queue argument RabbitMQ fixes when the queue is declared (docs/design.md, "Worker pools").
PRIORITY_ARGUMENT = "x-max-priority"


def broker_priority(priority: int) -> int:
    """RabbitMQ's message priority for a workflow's ``priority`` (1 first to 5 last):
    RabbitMQ delivers higher numbers first, so 1 is sent as 5 and 5 as 1."""
    return MAX_PRIORITY + 1 - min(max(priority, 1), MAX_PRIORITY)


def is_pool_name(name: Any) -> bool:
    """Whether ``name`` may name a pool."""
    return isinstance(name, str) and _POOL.match(name) is not None


def stored_queue(pool: str | None) -> str | None:
    """What a step keeps of the pool its definition names: None for the default pool."""
    return None if pool in (None, DEFAULT_POOL) else pool


def pool_queue(activity_queue: str, pool: str | None) -> str:
    """The queue of ``pool`` (None or ``default``: ``activity_queue`` itself)."""
    pool = stored_queue(pool)
    return activity_queue if pool is None else f"{activity_queue}.{pool}"


def pool_of(activity_queue: str, queue: str) -> str | None:
    """The pool whose queue ``queue`` is (:data:`DEFAULT_POOL` for ``activity_queue``),
    or None when it is no pool's (the engine's queues, another prefix's)."""
    if queue == activity_queue:
        return DEFAULT_POOL
    head, dot, pool = queue.rpartition(".")
    named = dot and head == activity_queue and is_pool_name(pool) and pool != DEFAULT_POOL
    return pool if named else None


def pool_queues(activity_queue: str, pools: Iterable[str]) -> tuple[str, ...]:
    """The queues of ``pools``, in order, each once."""
    return tuple(dict.fromkeys(pool_queue(activity_queue, p) for p in pools))


def pools_of_definitions(bodies: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The pools that definitions (their JSON bodies) name, each with the names of the
    definitions that name it, the default pool first (every definition may use it:
    a child's steps, sleeps and waits name none)."""
    named: dict[str, list[str]] = {DEFAULT_POOL: []}
    for body in bodies:
        for entry in body.get("activities") or ():
            pool = stored_queue(entry.get("queue")) if isinstance(entry, Mapping) else None
            users = named.setdefault(pool or DEFAULT_POOL, [])
            if body.get("name") not in users:
                users.append(str(body.get("name")))
    return {DEFAULT_POOL: named.pop(DEFAULT_POOL), **dict(sorted(named.items()))}


def waiting_for(pool: str, depth: int | None) -> str:
    """What a step scheduled on ``pool`` waits for (``depth``: the messages ready in the
    pool's queue, None: unknown): ``waiting for a worker on gpu (3 queued)``."""
    return f"waiting for a worker on {pool}" + ("" if depth is None else f" ({depth} queued)")


__all__ = [
    "DEFAULT_POOL",
    "MAX_PRIORITY",
    "PRIORITY_ARGUMENT",
    "POOL_PATTERN",
    "POOL_RULE",
    "broker_priority",
    "is_pool_name",
    "pool_of",
    "pool_queue",
    "pool_queues",
    "pools_of_definitions",
    "stored_queue",
    "waiting_for",
]
