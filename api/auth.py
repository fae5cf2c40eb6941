"""Who a request is, what it may do, and in which namespace (issue 27).

Tokens: ``FLOW_API_TOKEN`` (an admin of every namespace: the operator's token, as it
always was) and the per-namespace tokens of ``FLOW_TOKENS_FILE`` (stored as SHA-256,
:mod:`flow.core.namespaces`). With neither, the API is open, as it always was.

The namespace of a request is the ``X-Flow-Namespace`` header, else the token's own
namespace, else ``default``. A namespace token that names another namespace in the
header finds nothing there (404, as for a namespace that does not exist).

Three checks, in this order, each in one place:

1. the token (401) — :meth:`AccessMiddleware.process_request`;
2. the namespace of what the URL names (404 when it is another namespace's, exactly as
   when it does not exist, so that names do not leak) — :data:`URL_NAMES` and
   :func:`flow.persistence.namespaces.owner`. Only for a token bound to one namespace
   (:func:`owner_required`), and for a ``PUT`` (a name another namespace holds is taken);
   a responder that loads the row anyway may check it there instead, saying so in its
   ``owner_checked_on_load`` (``GET`` only: the role a ``GET`` needs, read, every token has,
   so the order of the checks is kept);
3. the role (403) — :func:`required_role`.

Lists are filtered by the resources, each reading :func:`namespace_of` (and
:func:`sees_everything` for the deployment-wide ``/metrics`` and ``/pools``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import falcon

from flow.core import namespaces
from flow.core.namespaces import Role, TokenEntry, TokensFile
from flow.errors import (
    BatchNotFound,
    ConfigurationError,
    DefinitionNotFound,
    EventNotFound,
    NameTaken,
    WorkflowNotFound,
)
from flow.persistence.namespaces import owner
from flow.process.runtime import Runtime
from flow.service.quotas import read_tokens_file

logger = logging.getLogger(__name__)

#: Routes open without a token: the health probe, the web page's static files and icon
#: (they hold no data; the page sends the token with every API call it makes), and
#: callbacks by token (``/signals/{token}``: the callback token is the credential, good
#: for one waiting step, for a third party that must not hold the API's token).
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/ui", "/signals/")

#: Route prefixes whose writes are an admin's: definitions, schedules, limits, batches.
ADMIN_PREFIXES = ("/definitions", "/schedules", "/limits", "/batches")
#: Writes by method that change nothing: checks a reader may make.
READ_ONLY_POSTS = frozenset({"/definitions/validate", "/definitions/{name}/replay"})
#: Routes about the whole deployment (queues, counts): a namespace token may not read them.
DEPLOYMENT_WIDE = frozenset({"/metrics", "/pools"})

#: Path parameter -> the kind of thing it names (:data:`flow.persistence.namespaces.OWNED`).
#: Every path parameter of every non-public route is here, or the app refuses to build
#: (:func:`check_routes`), so a new route cannot skip the namespace check.
URL_NAMES = {
    "workflow_id": "workflow",
    "batch_id": "batch",
    "event_id": "event",
    "name": None,  # a definition's, a schedule's, a limit's or a signal's: by prefix, below
    "version": None,  # a definition version's: its name decides
}
_NAME_KIND = {"/definitions/": "definition", "/schedules/": "schedule", "/limits/": "limit"}


def is_public(path: str) -> bool:
    """Whether ``path`` (a request's, or a route's template) is open without the token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def required_role(method: str, template: str) -> Role:
    """The least role that may call ``method`` on the route ``template``."""
    if method in ("GET", "HEAD", "OPTIONS") or template in READ_ONLY_POSTS:
        return Role.READ
    # Deleting is an admin's (a workflow's history goes with it); so is everything on
    # definitions, schedules, limits and batches. The rest (start, signal, cancel, pause,
    # resume, retry, rerun, events) is an operator's.
    return Role.ADMIN if method == "DELETE" or template.startswith(ADMIN_PREFIXES) else Role.OPERATE


@dataclass(frozen=True)
class Principal:
    """Who a request is: the namespace its token belongs to (None: every one) and its role."""

    namespace: str | None
    role: Role
    #: The token's label (never the token).
    name: str = ""


#: Who a request is when no token is configured: everyone may do everything, as before.
OPEN = Principal(None, Role.ADMIN, "open")


def namespace_of(req: falcon.Request) -> str:
    """The namespace a request acts in (set by :class:`AccessMiddleware`; ``default`` for a
    request it did not see, e.g. a test that calls a responder directly)."""
    return getattr(req.context, "namespace", namespaces.DEFAULT)


def owner_required(req: falcon.Request) -> str | None:
    """The namespace that what a URL names must belong to for this request to see it: the
    request's for a token bound to one namespace; None (any) for a request that may name
    every namespace (``FLOW_API_TOKEN``, or no token configured), from which hiding a thing
    would protect nothing: it may send the owner's name in the header."""
    return None if sees_everything(req) else namespace_of(req)


def sees_everything(req: falcon.Request) -> bool:
    """Whether the request's token is not bound to one namespace (FLOW_API_TOKEN, or no token)."""
    return getattr(req.context, "principal", OPEN).namespace is None


class Credentials:
    """The configured tokens: the operator's (``FLOW_API_TOKEN``) and the tokens file's."""

    def __init__(self, api_token: str | None, tokens: TokensFile) -> None:
        entries = list(tokens.tokens)
        if api_token:
            entries.append(TokenEntry(namespaces.hash_token(api_token), None, Role.ADMIN, "FLOW_API_TOKEN"))
        self._entries = tuple(entries)

    @classmethod
    def load(cls, api_token: str | None, tokens_file: str | None) -> Credentials:
        """The credentials of the settings (the file read once, when the app is built)."""
        return cls(api_token, read_tokens_file(tokens_file))

    @property
    def required(self) -> bool:
        """Whether any token is configured (else the API is open)."""
        return bool(self._entries)

    def authenticate(self, given: str) -> Principal | None:
        """The principal of the token ``given``, or None. Every entry is compared, in
        constant time over the SHA-256 digests, so the time taken says neither how much
        of a token matched nor which entry did."""
        digest = namespaces.hash_token(given).encode()
        found: TokenEntry | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.sha256.encode()) and found is None:
                found = entry
        return None if found is None else Principal(found.namespace, found.role, found.name)


def check_routes(templates: list[str]) -> None:
    """Refuse to build an app with a route whose path parameters the namespace check does
    not know (so a new route cannot be forgotten)."""
    for template in templates:
        if is_public(template):
            continue
        for part in template.split("{")[1:]:
            field = part.split("}")[0].split(":")[0]
            if field not in URL_NAMES:
                raise ConfigurationError(f"route {template}: api.auth.URL_NAMES does not know {{{field}}}")


class AccessMiddleware:
    """The token (401), the namespace of what the URL names (404) and the role (403)."""

    def __init__(self, runtime: Runtime, credentials: Credentials) -> None:
        self.runtime = runtime
        self.credentials = credentials

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = OPEN
        req.context.namespace = namespaces.DEFAULT
        if is_public(req.path):
            return
        principal = OPEN
        if self.credentials.required:
            scheme, _, given = (req.get_header("Authorization") or "").strip().partition(" ")
            # Compared whatever the scheme, so a wrong scheme costs the same time too.
            found = self.credentials.authenticate(given.strip())
            if found is None or scheme.lower() != "bearer":
                raise falcon.HTTPUnauthorized(
                    title="Authentication required",
                    description="send an API token as 'Authorization: Bearer <token>' "
                    "(FLOW_API_TOKEN, or one of FLOW_TOKENS_FILE)",
                    challenges=["Bearer"],
                )
            principal = found
        req.context.principal = principal
        wanted = req.get_header(namespaces.HEADER)
        if wanted is not None and not namespaces.is_namespace(wanted):
            raise falcon.HTTPBadRequest(
                title="Invalid namespace", description=f"{namespaces.HEADER} must match {namespaces.NAME_PATTERN}"
            )
        req.context.namespace = wanted or principal.namespace or namespaces.DEFAULT
        if principal.namespace is not None and req.context.namespace != principal.namespace:
            # Another namespace than the token's: nothing there, whatever the URL (lists too).
            raise falcon.HTTPNotFound(title="Not found", description=f"no namespace {wanted!r} for this token")

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: Mapping[str, Any]
    ) -> None:
        template = req.uri_template or ""
        if resource is None or is_public(template):
            return
        principal: Principal = req.context.principal
        if template in DEPLOYMENT_WIDE and principal.namespace is not None:
            raise falcon.HTTPForbidden(
                title="Deployment-wide", description=f"{template} is about every namespace: it needs FLOW_API_TOKEN"
            )
        # Checked on the row the responder loads anyway, when it says so: one query fewer.
        if req.method not in getattr(resource, "owner_checked_on_load", ()):
            self._hide(req, template, params)
        if principal.role < required_role(req.method, template):
            raise falcon.HTTPForbidden(
                title="Not allowed",
                description=f"a {principal.role.name.lower()} token may not {req.method} {template}; "
                f"it needs {required_role(req.method, template).name.lower()}",
            )

    def _hide(self, req: falcon.Request, template: str, params: Mapping[str, Any]) -> None:
        """Answer what the URL names as missing when it is another namespace's (for a token
        bound to a namespace), and a ``PUT`` of a name another namespace holds as taken (for
        every request: a name names one thing in the deployment)."""
        if owner_required(req) is None and req.method != "PUT":
            return  # no owner query: nothing to hide from a request that may name any namespace
        namespace = req.context.namespace
        for field, value in params.items():
            kind = URL_NAMES.get(field)
            if kind is None and field == "name":
                kind = next((k for prefix, k in _NAME_KIND.items() if template.startswith(prefix)), None)
            if kind is None:
                continue
            found = owner(self.runtime.store.database, kind, str(value))
            if found is None or found == namespace:
                continue  # missing things are the resource's to answer
            _MISSING[kind](self.runtime, req, str(value), namespace)


def _workflow(runtime: Runtime, req: falcon.Request, workflow_id: str, namespace: str) -> None:
    raise WorkflowNotFound(workflow_id)


def _batch(runtime: Runtime, req: falcon.Request, batch_id: str, namespace: str) -> None:
    raise BatchNotFound(batch_id)


def _event(runtime: Runtime, req: falcon.Request, event_id: str, namespace: str) -> None:
    raise EventNotFound(event_id)


def _definition(runtime: Runtime, req: falcon.Request, name: str, namespace: str) -> None:
    if req.method == "PUT":
        raise NameTaken("definition", name)
    known = [d["name"] for d in runtime.store.list_definitions(namespace=namespace)]
    raise falcon.HTTPNotFound(title="Definition not found", description=str(DefinitionNotFound(name, known)))


def _schedule(runtime: Runtime, req: falcon.Request, name: str, namespace: str) -> None:
    if req.method == "PUT":
        raise NameTaken("schedule", name)
    raise falcon.HTTPNotFound(title="Schedule not found", description=f"no schedule named {name!r}")


def _limit(runtime: Runtime, req: falcon.Request, name: str, namespace: str) -> None:
    if req.method == "PUT":
        raise NameTaken("limit", name)
    req.context.hidden_limit = True  # read as a limit nobody set: nothing held


#: What a URL naming another namespace's thing answers: what it answers for a missing one.
_MISSING: dict[str, Callable[[Runtime, falcon.Request, str, str], None]] = {
    "workflow": _workflow,
    "batch": _batch,
    "event": _event,
    "definition": _definition,
    "schedule": _schedule,
    "limit": _limit,
}


__all__ = [
    "OPEN",
    "AccessMiddleware",
    "Credentials",
    "Principal",
    "check_routes",
    "is_public",
    "namespace_of",
    "owner_required",
    "required_role",
    "sees_everything",
]
