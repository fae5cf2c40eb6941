"""``/definitions``: list, show (newest or a given version), register and validate."""

from __future__ import annotations

import falcon

from api.errors import unprocessable
from api.media import read_json_object
from flow.core.definition import Definition, is_definition_name, parse
from flow.errors import DefinitionNotFound
from flow.runtime import Runtime
from flow.views import iso


def _find(runtime: Runtime, name: str, version: int | None = None) -> tuple[Definition, int]:
    """The definition, or 404 (an unknown name in a URL is a missing resource)."""
    if not is_definition_name(name):  # e.g. a NUL, which PostgreSQL would refuse
        raise falcon.HTTPNotFound(title="Definition not found", description=f"no definition can be named {name!r}")
    try:
        return runtime.service.definition(name, version)
    except DefinitionNotFound as e:
        raise falcon.HTTPNotFound(title="Definition not found", description=str(e)) from e


def _definition_view(name: str, version: int, body: dict, **extra: object) -> dict:
    return {"name": name, "version": version, **extra, "definition": body}


class DefinitionsResource:
    """``GET /definitions``: every definition name with its newest version."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.runtime.service.sync_definitions()
        resp.media = {
            "items": [
                {
                    "name": d["name"],
                    "version": d["version"],
                    "created_at": iso(d["created_at"]),
                    "activities": len(d["body"]["activities"]),
                }
                for d in self.runtime.store.list_definitions()
            ]
        }


class DefinitionResource:
    """``GET /definitions/{name}`` (newest version, with the list of versions);
    ``PUT /definitions/{name}`` registers a body as a new version."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        definition, version = _find(self.runtime, name)
        versions = [
            {"version": v["version"], "created_at": iso(v["created_at"])}
            for v in self.runtime.store.definition_versions(name)
        ]
        resp.media = _definition_view(name, version, dict(definition.body), versions=versions)

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes, allowed=None)
        if body.get("name", name) != name:
            raise unprocessable("$.name", f"must be {name!r}, the name in the URL")
        body.setdefault("name", name)
        definition, version, created = self.runtime.service.register(body)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/definitions/{name}/versions/{version}"
        resp.media = _definition_view(name, version, dict(definition.body), created=created)


class DefinitionVersionResource:
    """``GET /definitions/{name}/versions/{version}``; ``DELETE`` deletes that version
    unless a workflow in progress was started with it (409). Workflows keep their own
    snapshot of the definition, so ended ones read as before."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, version: int) -> None:
        definition, found = _find(self.runtime, name, version)
        resp.media = _definition_view(name, found, dict(definition.body))

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

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, max_bytes=self.runtime.settings.max_body_bytes, allowed=None)
        definition = parse(body, known_activities=self.runtime.activity_classes)
        resp.media = {"valid": True, "name": definition.name, "activities": len(definition.activities)}
