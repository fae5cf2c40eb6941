"""Security headers on every response: what a browser may load, frame and send on.

The web page (``api/static``) loads its script and stylesheet from this origin only,
with no inline script or style attribute, so the policy allows nothing else; the
API's JSON responses get the same headers (they cost nothing and protect a response
opened directly in a browser).
"""

from __future__ import annotations

import falcon

#: ``default-src 'self'`` covers scripts, styles, images, fonts and fetch/XHR; the
#: rest closes what ``default-src`` does not: plugins, ``<base>``, form targets, and
#: being framed (``frame-ancestors`` is not inherited from ``default-src``).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every response, errors included."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_headers(SECURITY_HEADERS)
