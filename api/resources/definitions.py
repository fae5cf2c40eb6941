"""``/definitions``: list, show (newest or a given version), register and validate."""

from __future__ import annotations

import falcon

from api.auth import namespace_of
from api.errors import unprocessable
from api.media import read_json_object
from api.operation import Link, Param, Reply, operation
from api.views import iso
from flow.core.definition import NAME_PATTERN, SCHEMA, Definition, is_definition_name, parse
from flow.core.namespaces import DEFAULT
from flow.errors import DefinitionNotFound
from flow.process.runtime import Runtime
from flow.service import replay

#: The body of ``PUT /definitions/{name}``: a definition whose name may be left out
#: (the URL's is used).
PUT_SCHEMA = {
    **SCHEMA,
    "required": [field for field in SCHEMA["required"] if field != "name"],
    "description": "A workflow definition (see the README). The name may be left out: the URL's is used.",
    "examples": [{key: value for key, value in example.items() if key != "name"} for example in SCHEMA["examples"]],
}

_NEW_VERSION_LINKS = {
    "GetDefinition": Link("DefinitionResource.on_get", {"name": "$response.body#/name"}),
    "GetVersion": Link(
        "DefinitionVersionResource.on_get", {"name": "$response.body#/name", "version": "$response.body#/version"}
    ),
}
_DEFINITION = Reply("The definition", "Definition")
CHECK = Param(
    "check",
    {"type": "string", "enum": ["running"]},
    "`running`: 409 with the replay report, and nothing registered, when a running workflow of "
    "this name could not be moved to the new version (see POST /definitions/{name}/replay); 422 "
    "when its running workflows hold more steps than the API checks in one request (use `flow replay`).",
)
#: A name that does not match cannot exist (404, or 422 when registering).
_NAME = {"name": {"pattern": NAME_PATTERN}}


def _find(runtime: Runtime, name: str, version: int | None = None) -> tuple[Definition, int]:
    """The definition, or 404 (an unknown name in a URL is a missing resource)."""
    if not is_definition_name(name):  # e.g. a NUL, which PostgreSQL would refuse
        raise falcon.HTTPNotFound(title="Definition not found", description=f"no definition can be named {name!r}")
    try:
        return runtime.service.definitions.get(name, version)
    except DefinitionNotFound as e:
        raise falcon.HTTPNotFound(title="Definition not found", description=str(e)) from e


def named_body(runtime: Runtime, req: falcon.Request, name: str) -> dict:
    """The request's definition body, named as the URL names it (it may leave its name out)."""
    body = read_json_object(req, max_bytes=runtime.settings.max_body_bytes)
    if body.get("name", name) != name:
        raise unprocessable("$.name", f"must be {name!r}, the name in the URL")
    body.setdefault("name", name)
    return body


def _definition_view(definition: Definition, version: int, **extra: object) -> dict:
    """A version of a definition, as written, and what each of its steps is: its id (its
    own, or the one the server gives it), name and kind, so that no client infers them."""
    steps = [{"id": s.id, "name": s.name, "kind": s.spec.kind} for s in definition.activities]
    return {"name": definition.name, "version": version, **extra, "definition": dict(definition.body), "steps": steps}


class DefinitionsResource:
    """``GET /definitions``: every definition name with its newest version, and the
    definition files left out as invalid (``broken``), each with why."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Every definition with its newest version",
        responses={200: Reply("The definitions", "DefinitionList")},
        errors=(503,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.runtime.service.definitions.sync()
        namespace = namespace_of(req)
        # The directory's files are the default namespace's, and so are their problems.
        broken = self.runtime.service.catalog.broken if namespace == DEFAULT else []
        resp.media = {
            "items": [
                {
                    "name": d["name"],
                    "version": d["version"],
                    "created_at": iso(d["created_at"]),
                    "activities": len(d["body"]["activities"]),
                }
                for d in self.runtime.store.list_definitions(namespace=namespace)
            ],
            "broken": [{"source": b.source, "name": b.name, "error": b.error} for b in broken],
        }


class DefinitionResource:
    """``GET /definitions/{name}`` (newest version, with the list of versions);
    ``PUT /definitions/{name}`` registers a body as a new version."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "The newest version of a definition, with the list of versions",
        responses={200: _DEFINITION},
        errors=(404, 503),
        path=_NAME,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        definition, version = _find(self.runtime, name)
        versions = [
            {"version": v["version"], "created_at": iso(v["created_at"])}
            for v in self.runtime.store.definition_versions(name)
        ]
        resp.media = _definition_view(definition, version, versions=versions)

    @operation(
        "Register a definition; a changed body becomes a new version",
        body=PUT_SCHEMA,
        responses={
            201: Reply("A new version; `Location` names it", "Definition", links=_NEW_VERSION_LINKS),
            200: Reply("This body was registered before", "Definition"),
        },
        errors=(409, 503),
        path=_NAME,
        query=(CHECK,),
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        check = req.get_param("check")
        if check not in (None, "running"):
            raise unprocessable("check", "must be 'running' (refuse a version running workflows could not move to)")
        body = named_body(self.runtime, req, name)
        if check == "running":  # before anything is registered (flow.service.replay)
            parsed = parse(body, known_activities=self.runtime.activity_classes, source="<request>")
            replay.refuse_incompatible(self.runtime.store, parsed, max_steps=replay.API_MAX_STEPS)
        definition, version, created = self.runtime.service.definitions.register(body, namespace=namespace_of(req))
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/definitions/{name}/versions/{version}"
        resp.media = _definition_view(definition, version, created=created)


class DefinitionVersionResource:
    """``GET /definitions/{name}/versions/{version}``; ``DELETE`` deletes that version
    unless a workflow in progress was started with it (409). Workflows keep their own
    snapshot of the definition, so ended ones read as before."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation("One version of a definition", responses={200: _DEFINITION}, errors=(404, 503), path=_NAME)
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, version: int) -> None:
        definition, found = _find(self.runtime, name, version)
        resp.media = _definition_view(definition, found)

    @operation(
        "Delete a version no workflow in progress uses (its number is never reused)",
        responses={204: Reply("Deleted")},
        errors=(404, 409, 503),
        path=_NAME,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, version: int) -> None:
        _find(self.runtime, name, version)  # 404 for a name or version that does not exist
        try:
            self.runtime.store.delete_definition_version(name, version)
        except DefinitionNotFound as e:  # deleted meanwhile
            raise falcon.HTTPNotFound(title="Definition not found", description=str(e)) from e
        resp.status = falcon.HTTP_204


class DefinitionValidationResource:
    """``POST /definitions/validate``: check a body without registering it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @operation(
        "Validate a definition without registering it",
        body=SCHEMA,
        responses={200: Reply("Valid", "Validation")},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes)
        definition = parse(body, known_activities=self.runtime.activity_classes)
        self.runtime.service.definitions.check_children(definition, source="<request>", namespace=namespace_of(req))
        resp.media = {"valid": True, "name": definition.name, "activities": len(definition.activities)}
