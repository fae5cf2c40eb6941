"""``GET /health``: 200 when the database answers, 503 otherwise."""

from __future__ import annotations

import falcon

from flow.errors import StoreUnavailable
from flow.runtime import Runtime


class HealthResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            self.runtime.store.ping()
        except StoreUnavailable as e:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "database": str(e)}
            return
        resp.media = {"status": "ok", "database": "ok"}
