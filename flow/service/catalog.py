"""Definition files: reading one, and the definitions directory a process knows.

The only place that reads definitions from disk; validating them is
:func:`flow.core.definition.parse`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flow.core import strict_json
from flow.core.definition import Definition, parse
from flow.core.kinds import child as children
from flow.core.strict_json import json_path
from flow.errors import DefinitionError, DefinitionNotFound, InvalidJson

logger = logging.getLogger(__name__)


def load_file(path: str | Path, *, known_activities: Collection[str]) -> Definition:
    """Read and validate one definition file."""
    path = Path(path)
    try:
        body = strict_json.loads(path.read_bytes(), what="the file")
    except OSError as e:
        raise DefinitionError(str(path), [("$", f"cannot read file: {e.strerror}")]) from e
    except InvalidJson as e:
        raise DefinitionError(str(path), [(e.path, e.message)]) from e
    return parse(body, known_activities=known_activities, source=str(path))


def child_problems(definitions: Collection[Definition]) -> dict[str, list[tuple[str, str]]]:
    """Problems of the children of ``definitions`` among themselves (a file has no
    version: a child pinned to one is not followed, nor one that is not among them,
    which may be registered), by definition name: a definition that reaches itself."""
    bodies = {d.name: d.body for d in definitions}

    def lookup(name: str, version: int | None) -> Any:
        return bodies.get(name) if version is None else None

    found = {}
    for d in definitions:
        problems = children.cycle_problems(
            d.body, lookup, lambda index, *keys: json_path(["activities", index, *keys]), check_unknown=False
        )
        if problems:
            found[d.name] = problems
    return found


@dataclass(frozen=True)
class BrokenDefinition:
    """A definition left out because it is invalid: its file (or ``name vN`` when
    stored), its name when it could be read, and why."""

    source: str
    name: str | None
    error: str


class Catalog:
    """The definitions a process knows, by name, and the files left out as broken."""

    def __init__(
        self,
        definitions: Collection[Definition] = (),
        *,
        missing: str | None = None,
        broken: Collection[BrokenDefinition] = (),
    ) -> None:
        self._by_name = {d.name: d for d in definitions}
        #: Why no file was read, when the directory does not exist (for "not found" errors).
        self.missing = missing
        #: The invalid files, left out (``GET /definitions`` shows them).
        self.broken: list[BrokenDefinition] = list(broken)
        self._sources: dict[str, str] = {}

    @classmethod
    def from_directory(cls, directory: str | Path, *, known_activities: Collection[str]) -> Catalog:
        """Load every ``*.json`` file in ``directory``; an invalid file (or a second file
        of one name, or files whose children reach themselves) is logged and left out,
        so that it never stops the others from loading."""
        directory = Path(directory)
        if not directory.is_dir():
            # Not a warning: definitions also arrive by PUT /definitions and by ``flow run
            # FILE``, and those registered before stay in the database.
            missing = f"the definitions directory {directory} (FLOW_DEFINITIONS_DIR) does not exist"
            logger.info("%s: no definitions from files (registered ones can start)", missing)
            return cls(missing=missing)
        catalog = cls()
        seen: dict[str, str] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                d = load_file(path, known_activities=known_activities)
                if d.name in seen:
                    raise DefinitionError(str(path), [("$.name", f"{d.name!r} is also defined in {seen[d.name]}")])
            except DefinitionError as e:
                catalog.leave_out(str(path), None, e)
                continue
            catalog._by_name[d.name] = d
            catalog._sources[d.name] = seen[d.name] = str(path)
        for name, problems in child_problems(list(catalog)).items():
            catalog.leave_out(seen[name], name, DefinitionError(seen[name], problems))
        return catalog

    def leave_out(self, source: str, name: str | None, error: DefinitionError) -> None:
        """Drop an invalid definition (``name``, when known) with a log line, and keep
        it as broken."""
        logger.error("definition %s left out: %s", source, error)
        if name is not None:
            self._by_name.pop(name, None)
        self.broken.append(BrokenDefinition(source, name, str(error)))

    def source_of(self, name: str) -> str:
        """The file ``name`` was read from."""
        return self._sources.get(name, name)

    def get(self, name: str) -> Definition:
        try:
            return self._by_name[name]
        except KeyError:
            raise DefinitionNotFound(name, list(self._by_name)) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
