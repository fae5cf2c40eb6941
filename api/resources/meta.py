"""``/``, ``/openapi.json`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

import falcon

from api.operation import Reply, operation
from flow import metrics
from flow.runtime import Runtime


class OpenApiResource:
    """``GET /openapi.json``: the document :func:`api.openapi.document` derived from the
    routes, set by ``create_app`` once every route is added."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}

    @operation("This document", responses={200: Reply("OpenAPI 3.1", {"type": "object"})})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


class MetricsResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Prometheus metrics: workflows and activities by status, outbox size",
        responses={200: Reply("Prometheus text format", {"type": "string"}, media_type="text/plain")},
        errors=(503,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = metrics.CONTENT_TYPE
        resp.data = metrics.render(self.runtime.store)


class RootResource:
    """``GET /`` sends a browser to the web page."""

    @operation("Redirects to the web page at /ui/", responses={302: Reply("Location: /ui/")})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPFound("/ui/")
