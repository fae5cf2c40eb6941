"""``/``, ``/openapi.json``, ``/metrics`` and ``/favicon.ico``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon

from api.operation import Reply, operation
from flow.observability import metrics
from flow.process.runtime import Runtime


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


class FaviconSink:
    """``GET /favicon.ico``: the web page's icon (``api/static/favicon.ico``, 32×32: the
    timeline's bars on the page's accent colour).

    Browsers ask for it on their own, without the token, so it is public. A sink rather
    than a route: like the page's files under ``/ui``, it is no part of the API or of its
    OpenAPI document.
    """

    #: Browsers may keep it a day.
    MAX_AGE_S = 86400

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()

    def __call__(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
        resp.content_type = "image/x-icon"
        resp.cache_control = ["public", f"max-age={self.MAX_AGE_S}"]
        resp.data = self.data
