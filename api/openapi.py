"""The OpenAPI 3.1 document served at ``/openapi.json``, derived from the routes.

:func:`document` walks the router's routes (:func:`falcon.inspect.inspect_compiled_router`,
the same walk as ``falcon.inspect.inspect_routes(app)``) and reads each responder's
``@operation`` (:mod:`api.operation`): a route whose responder says nothing about
itself is an error, so no endpoint goes undocumented. Path parameters come from the
URI template (with the bounds of its converters), request bodies are the JSON
Schemas the responders validate with, response bodies are :mod:`api.schemas`.

No library builds it. Falcon has none of its own; spectree (the one that supports
Falcon 4) describes requests and responses as pydantic models, so every schema here
(the definition's, the start request's, which the AMQP and Dramatiq doors enforce as
well) would have to be written a second time as a model, or the doors would have to
depend on pydantic. The walk below is all that deriving the document takes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

import falcon.inspect
import falcon.routing

from api.auth import is_public
from api.operation import Operation, Param, Reply, described
from api.schemas import COMPONENTS, ref
from flow.core import namespaces
from flow.core.strict_json import MAX_DEPTH

#: What each error status means, whichever operation answers it.
ERRORS = {
    400: "Not JSON that Libero Flow reads: malformed, not UTF-8, NaN or Infinity, an integer beyond 64 bits, "
    f"NUL or a lone surrogate in a string, or nested more than {MAX_DEPTH} deep; `errors` names the JSON path",
    401: "Missing or wrong bearer token",
    403: "The token's role may not do this (a read token on a write; an operate token on an admin's write)",
    404: "Not found (also what another namespace's things answer, so that names do not leak)",
    409: "Conflict: with the workflow's status, or an idempotency key already used for another start",
    410: "Gone: the callback token's wait or workflow has ended (a token delivers once)",
    413: "Body over FLOW_MAX_BODY_BYTES",
    415: "Body is not application/json",
    422: "Invalid fields; each error names its JSON path",
    429: "Too many starts at once in this API process (FLOW_MAX_STARTS_IN_FLIGHT), or over the namespace's "
    "quota (running workflows or starts per second); `Retry-After` says when to try again, nothing was stored",
    503: "Database unavailable, or (a start) the engines' backlog of unstarted workflows is at "
    "FLOW_MAX_START_BACKLOG; `Retry-After` says when to try again, nothing was stored",
}
#: The namespace of a request (api.auth), read on every route that needs a token.
NAMESPACE = Param(
    namespaces.HEADER,
    {"type": "string", "pattern": namespaces.NAME_PATTERN},
    "The namespace to act in; default: the token's own namespace, else `default`. A namespace token "
    "naming another namespace finds nothing (404).",
)
#: Errors that reading a JSON body can answer (``api.media.read_json_object``).
BODY_ERRORS = (400, 413, 415, 422)

#: ``{name}`` or ``{name:converter(arguments)}`` in a Falcon URI template.
_FIELD = re.compile(r"{(?P<name>\w+)(?::(?P<converter>\w+)(?:\((?P<arguments>[^)]*)\))?)?}")


def document(router: falcon.routing.CompiledRouter, *, auth: bool) -> dict[str, Any]:
    """The OpenAPI document of every route of ``router``; ``auth`` adds the bearer token."""
    components = dict(COMPONENTS)
    paths: dict[str, Any] = {}
    for route in falcon.inspect.inspect_compiled_router(router):
        path, parameters, example = _template(route.path)
        # Inspection names the responders; routing a path of the template through the
        # router (its public find) gives the resource's own, with their @operation.
        found = router.find(example)
        if found is None or found[3] != route.path:
            raise LookupError(f"{route.path}: {example} routes elsewhere; the document cannot find its resource")
        responders = found[1]
        for method in route.methods:
            if method.internal:  # Falcon's own OPTIONS and 405 responders
                continue
            responder = responders[method.method]
            operation = described(responder)
            if operation is None:
                raise LookupError(f"{route.class_name}.{method.function_name} ({route.path}) has no @operation")
            public = is_public(route.path)
            paths.setdefault(path, {})[method.method.lower()] = _operation(
                operation, responder, parameters, components, auth=auth and not public, public=public
            )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Libero Flow",
            "version": "0.1.0",
            "description": "Start, watch, cancel and retry JSON-defined workflows; register definitions. "
            "Everything belongs to a namespace, named by the X-Flow-Namespace header or the token's own "
            "(default: `default`); tokens have a role: read, operate or admin (see the README).",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    _check_links(paths)
    return doc


def _operation(
    operation: Operation,
    responder: Callable[..., Any],
    path_parameters: list[dict[str, Any]],
    components: dict[str, Any],
    *,
    auth: bool,
    public: bool,
) -> dict[str, Any]:
    errors = (
        set(operation.errors) | ({401, 403, 404} if auth else set()) | (set(BODY_ERRORS) if operation.body else set())
    )
    responses = {str(status): _reply(reply, components) for status, reply in sorted(operation.responses.items())}
    responses.update({str(status): _reply(Reply(ERRORS[status], "Error"), components) for status in sorted(errors)})
    doc: dict[str, Any] = {
        "operationId": responder.__qualname__,
        "summary": operation.summary,
        "responses": responses,
    }
    narrower = dict(operation.path)
    parameters = [
        *({**p, "schema": {**p["schema"], **narrower.pop(p["name"], {})}} for p in path_parameters),
        *(_parameter(p.name, "query", p.schema, p.description) for p in operation.query),
        *(_parameter(p.name, "header", p.schema, p.description) for p in operation.headers),
        *([] if public else [_parameter(NAMESPACE.name, "header", NAMESPACE.schema, NAMESPACE.description)]),
    ]
    if narrower:
        raise LookupError(f"{responder.__qualname__}: {sorted(narrower)} are not fields of its URI template")
    if parameters:
        doc["parameters"] = parameters
    if operation.body is not None:
        doc["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _lift_defs(operation.body, components)}},
        }
    if public:
        doc["security"] = []
    return doc


def _reply(reply: Reply, components: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": reply.description}
    if reply.schema is not None:
        if isinstance(reply.schema, str) and reply.schema not in components:
            raise LookupError(f"no component named {reply.schema!r}")
        schema = ref(reply.schema) if isinstance(reply.schema, str) else dict(reply.schema)
        doc["content"] = {reply.media_type: {"schema": schema}}
    if reply.links:
        doc["links"] = {
            name: {"operationId": link.operation_id, "parameters": dict(link.parameters)}
            for name, link in reply.links.items()
        }
    return doc


def _parameter(name: str, where: str, schema: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": where, "schema": dict(schema)}
    if where == "path":
        parameter["required"] = True
    if description:
        parameter["description"] = description
    return parameter


def _template(template: str) -> tuple[str, list[dict[str, Any]], str]:
    """A Falcon URI template's OpenAPI path, its path parameters, and a path that it
    matches (to find the route's resource with the router)."""
    parameters = []
    for field in _FIELD.finditer(template):
        schema = _converter_schema(template, field["converter"], field["arguments"])
        parameters.append(_parameter(field["name"], "path", schema))
    path = _FIELD.sub(lambda field: "{" + field["name"] + "}", template)
    # A literal "{name}" segment matches the field and no literal sibling ("validate").
    example = _FIELD.sub(lambda f: _example(f["converter"], f["arguments"]) or "{" + f["name"] + "}", template)
    return path, parameters, example


def _converter_schema(template: str, converter: str | None, arguments: str | None) -> dict[str, Any]:
    if converter is None:
        return {"type": "string"}
    if converter == "int":
        bounds = _arguments(arguments)
        schema: dict[str, Any] = {"type": "integer"}
        if "min" in bounds:
            schema["minimum"] = bounds["min"]
        if "max" in bounds:
            schema["maximum"] = bounds["max"]
        return schema
    if converter == "uuid":
        return {"type": "string", "format": "uuid"}
    raise ValueError(f"{template}: the document does not know Falcon's {converter!r} converter; describe it here")


def _example(converter: str | None, arguments: str | None) -> str | None:
    if converter == "int":
        return str(_arguments(arguments).get("min", 0))
    if converter == "uuid":
        return "00000000-0000-0000-0000-000000000000"
    return None


def _arguments(arguments: str | None) -> dict[str, Any]:
    """``"min=1, max=9"`` -> ``{"min": 1, "max": 9}`` (a converter's keyword arguments)."""
    if not arguments:
        return {}
    call = ast.parse(f"f({arguments})", mode="eval").body
    assert isinstance(call, ast.Call)
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords if keyword.arg}


def _lift_defs(schema: Mapping[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved to the components (capitalised), and its
    references following them: in an OpenAPI document ``#/...`` is the document's root."""
    schema = dict(schema)
    schema.pop("$schema", None)
    for name, definition in schema.pop("$defs", {}).items():
        component = _rewrite(definition)
        if components.setdefault(name.capitalize(), component) != component:
            raise ValueError(f"two request schemas define {name.capitalize()!r} differently")
    return _rewrite(schema)


def _rewrite(node: Any) -> Any:
    if isinstance(node, Mapping):
        target = node.get("$ref", "")
        if isinstance(target, str) and target.startswith("#/$defs/"):
            return ref(target.removeprefix("#/$defs/").capitalize())
        return {key: _rewrite(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node


def _check_links(paths: Mapping[str, Any]) -> None:
    """Every link names an operation of the document, and only parameters it has."""
    operations = {op["operationId"]: op for item in paths.values() for op in item.values()}
    for item in paths.values():
        for op in item.values():
            for reply in op["responses"].values():
                for name, link in reply.get("links", {}).items():
                    target = operations.get(link["operationId"])
                    if target is None:
                        raise LookupError(f"{op['operationId']}: link {name} names no operation")
                    known = {p["name"] for p in target.get("parameters", [])}
                    if not set(link["parameters"]) <= known:
                        raise LookupError(
                            f"{op['operationId']}: link {name} names parameters {link['operationId']} lacks"
                        )


__all__ = ["BODY_ERRORS", "ERRORS", "document"]
