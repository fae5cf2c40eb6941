"""Reading JSON request bodies with a size limit, a content-type check and the strict reader.

Falcon sets no body limit of its own, and a chunked request has no Content-Length,
so the stream is read up to the limit plus one byte: a longer body is refused
without ever being held in memory whole. The body is decoded by
:mod:`flow.core.strict_json`, the reader every door shares.
"""

from __future__ import annotations

from typing import Any

import falcon

from api.errors import unprocessable
from flow.core import strict_json
from flow.core.strict_json import JSON


def has_body(req: falcon.Request) -> bool:
    """Whether the request sends a body: a length above 0, or chunked (no length)."""
    if req.content_length is not None:
        return req.content_length > 0
    return "chunked" in (req.get_header("Transfer-Encoding") or "").lower() or bool(
        req.env.get("wsgi.input_terminated")
    )


def read_json_object(req: falcon.Request, *, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object body; 413/415/400/422 when it is not acceptable.

    400 (:class:`~flow.errors.InvalidJson`, mapped in ``api.errors``) when the body
    is not JSON that the strict reader accepts. Its fields are the caller's to check,
    with the body's JSON Schema (the one its ``@operation`` documents).
    """
    body = read_json(req, max_bytes=max_bytes)
    if not isinstance(body, dict):
        raise unprocessable("$", "the body must be a JSON object")
    return body


def read_json(req: falcon.Request, *, max_bytes: int) -> JSON:
    """The request's body as any JSON value (an empty body is ``null``); 413/415/400."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise _too_large(max_bytes)
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description=f"send the body as application/json (got {media_type or 'no Content-Type'})",
        )
    if req.content_length is None and req.env.get("wsgi.input_terminated"):
        # Chunked body: the server (gunicorn) ends the stream itself, so read it
        # directly; Falcon's bounded_stream would read nothing without a length.
        raw = req.stream.read(max_bytes + 1)
    else:
        raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    return strict_json.loads(raw or b"null", what="the body")


def _too_large(max_bytes: int) -> falcon.HTTPError:
    return falcon.HTTPContentTooLarge(
        title="Request body too large", description=f"the body must be at most {max_bytes} bytes (FLOW_MAX_BODY_BYTES)"
    )
