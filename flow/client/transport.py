"""One HTTP request to the Libero Flow API, tried again as :class:`RetryPolicy` says:
the only code in Libero Flow that speaks HTTP to the API (the client and the CLI's
remote commands both send through it).

Standard library only (``urllib``), so a service that calls Libero Flow needs nothing
the server does not.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flow.client.errors import NOTHING_DONE_STATUSES, RETRIED_STATUSES, ApiError, Unreachable, error_for
from flow.client.retries import RetryPolicy, parse_retry_after

logger = logging.getLogger(__name__)


#: Methods whose requests have the same effect twice as once (RFC 9110, 9.2.2); DELETE
#: is left out: the second answers 404 for a delete that succeeded.
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT"})


def segment(value: str) -> str:
    """``value`` as one path segment: a space, ``#``, ``?`` or ``/`` in a name or id must
    neither break the URL nor send the request somewhere else (``approved#2`` is not
    ``approved``)."""
    return urllib.parse.quote(value, safe="")


class Transport:
    """Sends requests to the API at ``base_url`` with ``token`` (a bearer token), in
    ``namespace`` (None: the token's own).

    ``sleep`` waits between tries; tests pass one that records the waits.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        namespace: str | None = None,
        timeout_s: float = 15.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        #: Sent as ``X-Flow-Namespace`` when set (else the server takes the token's own).
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> dict[str, Any]:
        """The API's reply: a JSON object (``{}`` for a reply with no body, a 204).

        ``repeatable``: sending the request twice has the effect of sending it once, so
        it may be tried again after any failure; otherwise only after a refused
        connection (it cannot have arrived) or a 429 or 503 (the API did nothing). Default:
        true for the methods HTTP says so of (GET, HEAD, PUT); a POST is repeatable
        when it carries its own idempotency key, and its caller says so.
        """
        if repeatable is None:
            repeatable = method in REPEATABLE_METHODS
        tried = 0
        while True:
            tried += 1
            try:
                return self._send_once(method, path, body, params, headers)
            except Unreachable as e:
                if not (repeatable or e.refused):
                    raise  # it may have arrived: sending it again might do it twice
                error: ApiError = e
            except ApiError as e:
                if e.status not in (RETRIED_STATUSES if repeatable else NOTHING_DONE_STATUSES):
                    raise
                error = e
            delay_s = self.retry.delay_s(tried, retry_after_s=error.retry_after_s, jitter=random.random())
            if delay_s is None:
                raise error
            logger.info("%s %s: %s; trying again in %.2f s (try %d)", method, path, error, delay_s, tried + 1)
            self._sleep(delay_s)

    def _send_once(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if self.namespace:
            request.add_header("X-Flow-Namespace", self.namespace)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _api_error(e) from e
        except ValueError as e:  # http.client.InvalidURL: a path no caller quoted
            raise ApiError(0, f"cannot send {method} {path!r}", str(e)) from e
        except OSError as e:  # URLError (refused, unknown host), a reset, a timeout
            reason = getattr(e, "reason", e)
            raise Unreachable(
                f"cannot reach the API at {self.base_url}",
                f"{reason} (is FLOW_API_URL right?)",
                refused=isinstance(reason, ConnectionRefusedError),
            ) from e
        reply: dict[str, Any] = json.loads(raw) if raw else {}
        return reply


def _api_error(e: urllib.error.HTTPError) -> ApiError:
    """The typed error of an error answer, with its problem details."""
    try:
        problem = json.loads(e.read() or b"{}")
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    retry_after_s = parse_retry_after(e.headers.get("Retry-After"), now=datetime.now(UTC))
    return error_for(e.code)(
        e.code,
        problem.get("title") or str(e.reason),
        problem.get("detail") or problem.get("description") or "",
        problems=problem.get("errors") if isinstance(problem.get("errors"), list) else None,
        retry_after_s=retry_after_s,
    )
