"""Bearer-token authentication, on when ``FLOW_API_TOKEN`` is set."""

from __future__ import annotations

import hmac

import falcon

#: Routes open without a token: the health probe, the web page's static files and icon
#: (they hold no data; the page sends the token with every API call it makes), and
#: callbacks by token (``/signals/{token}``: the callback token is the credential, good
#: for one waiting step, for a third party that must not hold the API's token).
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/ui", "/signals/")


def is_public(path: str) -> bool:
    """Whether ``path`` (a request's, or a route's template) is open without the token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BearerTokenMiddleware:
    """Requires ``Authorization: Bearer <token>`` on every route but :data:`PUBLIC_PATHS`.

    The scheme name is case-insensitive (RFC 7235 section 2.1: ``bearer`` and
    ``BEARER`` are ``Bearer`` too); the token is compared in constant time.
    """

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if is_public(req.path):
            return
        scheme, _, given = (req.get_header("Authorization") or "").strip().partition(" ")
        # Constant-time comparison: the time taken must not reveal how much matched.
        # It runs whatever the scheme, so a wrong scheme costs the same time too.
        matches = hmac.compare_digest(given.strip().encode(), self._expected)
        if not (matches and scheme.lower() == "bearer"):
            raise falcon.HTTPUnauthorized(
                title="Authentication required",
                description="send the API token as 'Authorization: Bearer <token>' (FLOW_API_TOKEN)",
                challenges=["Bearer"],
            )
