"""The registry of workflow definitions: the definitions directory's files registered
once per process, definitions registered by request, their children checked against
the others, and the parse of each stored version (cached: a version never changes)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from flow.core import namespaces
from flow.core.definition import Definition, parse
from flow.core.kinds import child as children
from flow.core.kinds import on_failure
from flow.core.strict_json import json_path
from flow.errors import DefinitionError, DefinitionNotFound, NameTaken
from flow.persistence.namespaces import owner
from flow.persistence.store import Store
from flow.service.catalog import Catalog
from flow.settings import Settings

logger = logging.getLogger(__name__)


class Definitions:
    """The definitions a process starts workflows with: stored versions, and the
    directory's files as the newest of their names."""

    def __init__(
        self, settings: Settings, store: Store, catalog: Catalog, activity_classes: Mapping[str, type]
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.activity_classes = activity_classes
        self._parsed: dict[tuple[str, int], Definition] = {}
        self._lock = threading.Lock()
        self._synced = False
        #: name -> its namespace: fixed when the name is first registered (a deleted
        #: version stays as a tombstone), so it is read once.
        self._owners: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Definitions {self.store!r}>"

    def sync(self) -> None:
        """Register the definitions directory's files (a changed file becomes a new version).

        Done once per process, on first need, so that a process can start before its
        database is reachable.
        """
        with self._lock:
            if self._synced:
                return
            left_out = True
            while left_out:  # leaving one out may leave out a file that runs it
                left_out = False
                for definition in list(self.catalog):
                    source = self.catalog.source_of(definition.name)
                    try:
                        self.check_children(definition, source=source)
                    except DefinitionError as e:  # e.g. its child's only version was deleted
                        self.catalog.leave_out(source, definition.name, e)
                        left_out = True
            for definition in self.catalog:
                version, created = self.store.register_definition(definition)
                if created:
                    logger.info(
                        "registered %s version %d from %s", definition.name, version, self.settings.definitions_dir
                    )
            self._synced = True

    def namespace_of(self, name: str) -> str | None:
        """The namespace that holds the definition name ``name``; None while nobody does
        (the directory's files are ``default``'s)."""
        found = self._owners.get(name)
        if found is None:
            found = owner(self.store.database, "definition", name)
            if found is not None:
                self._owners[name] = found
        return found

    def visible(self, name: str, namespace: str | None) -> bool:
        """Whether ``namespace`` (None: every namespace) may see the definition ``name``."""
        return namespace is None or self.namespace_of(name) in (None, namespace)

    def register(
        self, body: Any, *, source: str = "<request>", namespace: str = namespaces.DEFAULT
    ) -> tuple[Definition, int, bool]:
        """Validate ``body`` and store it as a new version of its name in ``namespace``;
        ``(definition, version, created)``. A name another namespace holds: :class:`NameTaken`
        (a name names one definition in the deployment, so a workflow, a schedule, a
        trigger and a child always mean the one their namespace holds)."""
        definition = parse(body, known_activities=self.activity_classes, source=source)
        self.sync()
        if not self.visible(definition.name, namespace):
            raise NameTaken("definition", definition.name)
        self.check_children(definition, source=source, namespace=namespace)
        version, created = self.store.register_definition(definition, namespace=namespace)
        return definition, version, created

    def check_children(self, definition: Definition, *, source: str, namespace: str | None = None) -> None:
        """Refuse a definition whose children are unknown or reach it again (the
        definitions directory's files count as the newest of their names); a child of
        another namespace than ``namespace`` is unknown."""

        def lookup(name: str, version: int | None) -> Any:
            if not self.visible(name, namespace):
                return None
            if version is None and name in self.catalog.names():
                return self.catalog.get(name).body
            found = self.store.definition(name, version)
            return found[1] if found else None

        problems = children.cycle_problems(
            definition.body, lookup, lambda index, *keys: json_path(["activities", index, *keys])
        )
        problems += on_failure.unknown_handler(definition.body, lookup)
        if problems:
            raise DefinitionError(source, problems)

    def child_versions(self, definition: Definition) -> dict[str, int]:
        """The newest version of each child definition that ``definition`` runs without
        ``version``: a child runs the newest at its parent's start."""
        versions = {}
        for name in children.unpinned([step.spec for step in definition.activities]):
            found = self.store.definition_version(name)
            if found is not None:
                versions[name] = found
        return versions

    def get(self, name: str, version: int | None = None, *, namespace: str | None = None) -> tuple[Definition, int]:
        """The registered definition ``name`` (newest version unless ``version``); one that
        ``namespace`` (None: any) may not see is not found."""
        self.sync()
        if not self.visible(name, namespace):
            known = [d["name"] for d in self.store.list_definitions(namespace=namespace)]
            raise DefinitionNotFound(name, known)
        found_version = self.store.definition_version(name, version)
        if found_version is not None:
            with self._lock:
                parsed = self._parsed.get((name, found_version))
            if parsed is not None:
                return parsed, found_version  # versions never change: the parse is cached
        found = self.store.definition(name, found_version) if found_version is not None else None
        if found is None:
            known = [d["name"] for d in self.store.list_definitions(namespace=namespace)]
            if version is not None and name in known:
                raise DefinitionNotFound(f"{name} version {version}", known)
            raise DefinitionNotFound(name, known, hint=self.catalog.missing)
        found_version, body = found
        parsed = parse(body, known_activities=self.activity_classes, source=f"{name} v{found_version}")
        with self._lock:
            self._parsed[(name, found_version)] = parsed
        return parsed, found_version
