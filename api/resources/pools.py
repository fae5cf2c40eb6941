"""``GET /pools``: the worker pools the registered definitions name, with each queue's
backlog; and the backlog of the pools a workflow's scheduled steps wait on, for its view."""

from __future__ import annotations

from collections.abc import Mapping

import falcon

from api.operation import Reply, operation
from flow.core.pools import pool_queue, pools_of_definitions
from flow.core.state import WorkflowState
from flow.core.vocabulary import ActivityStatus
from flow.process.queue_depths import QueueDepths
from flow.process.runtime import Runtime


class PoolsResource:
    """``GET /pools``: each pool (``default`` first), its queue, the messages ready in it
    (null when the broker does not answer), and the definitions that name it."""

    def __init__(self, runtime: Runtime, depths: QueueDepths) -> None:
        self.runtime = runtime
        self.depths = depths

    @operation(
        "The worker pools, with the messages waiting in each",
        responses={200: Reply("The pools", "PoolList")},
        errors=(503,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.runtime.service.definitions.sync()
        named = pools_of_definitions(d["body"] for d in self.runtime.store.list_definitions())
        activity_queue = self.runtime.settings.activity_queue
        queues = {pool: pool_queue(activity_queue, pool) for pool in named}
        depths = self.depths.of(list(queues.values()))
        resp.media = {
            "items": [
                {"name": pool, "queue": queues[pool], "queued": depths[queues[pool]], "definitions": users}
                for pool, users in named.items()
            ]
        }


def waiting_pools(runtime: Runtime, depths: QueueDepths | None, state: WorkflowState) -> Mapping[str, int | None]:
    """The backlog of each named pool that a scheduled step of ``state`` waits on (none
    asked of the broker when no step does)."""
    pools = {a.queue for a in state.activities if a.queue is not None and a.status is ActivityStatus.SCHEDULED}
    if not pools or depths is None:
        return {}
    activity_queue = runtime.settings.activity_queue
    counted = depths.of([pool_queue(activity_queue, p) for p in sorted(pools)])
    return {p: counted[pool_queue(activity_queue, p)] for p in pools}
