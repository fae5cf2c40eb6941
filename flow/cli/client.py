"""A small HTTP client for the Libero Flow API (the CLI's remote commands use it).

Standard library only, so the CLI needs nothing the server does not.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flow.errors import FlowError


class ApiError(FlowError):
    """Raised when the API answers with an error, or cannot be reached (``status`` 0)."""

    def __init__(self, status: int, title: str, description: str = "") -> None:
        self.status = status
        self.title = title
        self.description = description
        super().__init__(f"{status} {title}: {description}" if status else f"{title}: {description}")


def segment(value: str) -> str:
    """``value`` as one path segment: a space, ``#``, ``?`` or ``/`` in a name or id must
    neither break the URL nor send the request somewhere else (``approved#2`` is not
    ``approved``)."""
    return urllib.parse.quote(value, safe="")


class ApiClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"<ApiClient {self.base_url}>"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The API's reply: a JSON object (``{}`` for a reply with no body, a 204)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            try:
                error = json.loads(e.read() or b"{}")
            except ValueError:
                error = {}
            raise ApiError(e.code, error.get("title", e.reason), error.get("description", "")) from e
        except ValueError as e:  # http.client.InvalidURL: a path no caller quoted
            raise ApiError(0, f"cannot send {method} {path!r}", str(e)) from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(0, f"cannot reach the API at {self.base_url}", f"{reason} (is FLOW_API_URL right?)") from e
        reply: dict[str, Any] = json.loads(raw) if raw else {}
        return reply

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params=params)
