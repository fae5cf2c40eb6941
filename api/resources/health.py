"""``GET /health``: 200 when the database and the broker answer (and the broker takes
publishes), 503 otherwise."""

from __future__ import annotations

import falcon
import pika

from api.operation import Reply, operation
from flow.errors import StoreUnavailable
from flow.persistence.database import deadline
from flow.process.broker import takes_publishes
from flow.process.runtime import Runtime

#: Longest each check waits: a load balancer's probe wants an answer, not a hang, when a
#: link is down (docs/design.md, "When the network lies").
CHECK_TIMEOUT_S = 2.0
BLOCKED = "blocked: RabbitMQ blocks publishers (a memory or disk alarm)"


class HealthResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Is the database (and broker) reachable?",
        responses={200: Reply("Everything answers", "Health"), 503: Reply("Something does not", "Health")},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {"database": self._database(), "broker": self._broker()}
        healthy = all(v == "ok" for v in checks.values())
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        if not healthy:
            resp.set_header("Retry-After", "5")  # like every other 503 of the API (api/errors.py)
        resp.media = {"status": "ok" if healthy else "unavailable", **checks}

    def _database(self) -> str:
        try:
            with deadline(CHECK_TIMEOUT_S):
                self.runtime.store.ping()
        except StoreUnavailable as e:
            return str(e)
        return "ok"

    def _broker(self) -> str:
        url = self.runtime.settings.broker_url
        if self.runtime.settings.uses_in_process_broker:
            return "ok"
        blocked = getattr(self.runtime.broker, "blocked", None)
        if blocked is not None and blocked.blocked:  # this process's last publish timed out blocked
            return BLOCKED
        try:
            parameters = pika.URLParameters(url)
            # socket_timeout bounds the TCP connect only; stack_timeout the whole AMQP
            # handshake, which a black-holed link would otherwise hold for 15 s.
            parameters.socket_timeout = CHECK_TIMEOUT_S
            parameters.stack_timeout = CHECK_TIMEOUT_S
            parameters.blocked_connection_timeout = CHECK_TIMEOUT_S
            if not takes_publishes(parameters):
                return BLOCKED
        except Exception as e:  # any failure to connect is "unavailable"
            return f"broker unavailable: {type(e).__name__} {e}".strip()
        return "ok"
