"""``/``, ``/openapi.json`` and ``/metrics``."""

from __future__ import annotations

import falcon

from api.openapi import document
from flow import metrics
from flow.runtime import Runtime


class OpenApiResource:
    def __init__(self, runtime: Runtime) -> None:
        self.document = document(auth=bool(runtime.settings.api_token))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


class MetricsResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = metrics.CONTENT_TYPE
        resp.data = metrics.render(self.runtime.store)


class RootResource:
    """``GET /`` sends a browser to the web page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPFound("/ui/")
