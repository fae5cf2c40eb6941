"""``/batches``: bulk operations — start one, list them, show one, cancel one
(docs/design.md, "Bulk operations"). A batch is stored and answered at once (202); the
engine holding its partition does the work."""

from __future__ import annotations

import falcon

from api.auth import namespace_of
from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Link, Param, Reply, operation
from api.resources.workflows import CURSOR, LIMIT, _decode_cursor, _encode_cursor, _int_param
from api.schemas import enum
from flow.core.batches import SCHEMA, BatchStatus
from flow.core.start_request import check_idempotency_key
from flow.process.runtime import Runtime

IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    "A second request with the same key returns the first batch (200) instead of starting another; "
    "with another request, 409.",
)
STATUS = Param("status", enum(BatchStatus), "Only batches in this status.")
_BATCH = Reply("The batch, with its progress", "Batch")
_LINKS = {
    "GetBatch": Link("BatchResource.on_get", {"batch_id": "$response.body#/id"}),
    "Cancel": Link("BatchCancelResource.on_post", {"batch_id": "$response.body#/id"}),
}


class BatchesResource:
    """``POST /batches`` starts a bulk operation; ``GET /batches`` lists them, newest first."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Cancel, retry or rerun every workflow a filter matches, in the background",
        body=SCHEMA,
        responses={
            202: Reply("Accepted: the engine works through it; `Location` names it", "Batch", links=_LINKS),
            200: Reply("The batch an earlier request with this Idempotency-Key started", "Batch"),
        },
        headers=(IDEMPOTENCY_KEY,),
        errors=(409, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        header = req.get_header(IDEMPOTENCY_KEY.name)
        key = None if header is None else check_idempotency_key(header, path=IDEMPOTENCY_KEY.name)
        batches = self.runtime.batches
        stored, created = batches.create(body, idempotency_key=key, namespace=namespace_of(req))
        resp.status = falcon.HTTP_202 if created else falcon.HTTP_200
        resp.location = f"/batches/{stored.id}"
        resp.media = batches.detailed_view(stored)

    @operation(
        "The batches, newest first, with their progress",
        query=(STATUS, CURSOR, LIMIT),
        responses={200: Reply("A page of batches", "BatchPage")},
        errors=(422, 503),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param(STATUS.name)
        if status is not None and status not in {s.value for s in BatchStatus}:
            raise unprocessable(STATUS.name, f"must be one of {', '.join(s.value for s in BatchStatus)}")
        limit = _int_param(req, LIMIT)
        batches = self.runtime.batches
        found = batches.list(
            status=None if status is None else BatchStatus(status),
            before=_decode_cursor(req.get_param(CURSOR.name)),
            limit=limit,
            namespace=namespace_of(req),
        )
        last = found[-1] if len(found) == limit else None
        next_cursor = _encode_cursor(last.created_at, last.id) if last else None
        resp.media = {"items": [batches.view(b) for b in found], "next": next_cursor}


class BatchResource:
    """``GET /batches/{id}``: a batch's request, status and counts, with the first
    workflows that failed or were skipped and why."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation("One batch, with its progress", responses={200: _BATCH}, errors=(404, 503))
    def on_get(self, req: falcon.Request, resp: falcon.Response, batch_id: str) -> None:
        batches = self.runtime.batches
        resp.media = batches.detailed_view(batches.get(batch_id))


class BatchCancelResource:
    """``POST /batches/{id}/cancel``: 202 while its engine stops it (what was sent stays
    sent; the rest is skipped); 409 once it ended."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Stop a running batch", responses={202: Reply("Its engine is stopping it", "Batch")}, errors=(404, 409, 503)
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, batch_id: str) -> None:
        batches = self.runtime.batches
        resp.status = falcon.HTTP_202
        resp.location = f"/batches/{batch_id}"
        resp.media = batches.detailed_view(batches.cancel(batch_id))
