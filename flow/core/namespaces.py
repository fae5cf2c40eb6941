"""Namespaces: who may do what where (issue 27). Pure data and parsing: the tokens file's
shape, the roles, the quotas; :mod:`api.auth` applies them to requests.

A namespace is a name that every definition, workflow, schedule, limit, event and batch
carries (``default`` unless said otherwise). A token belongs to one namespace with one
role; the tokens file (``FLOW_TOKENS_FILE``, JSON or TOML) lists the tokens by their
SHA-256 (never the token itself) and each namespace's quotas::

    [namespaces.acme]
    max_running = 100      # workflows in progress at once; a start past it: 429
    starts_per_s = 20      # starts per second (burst: one second's worth); past it: 429

    [[tokens]]
    namespace = "acme"
    role = "operate"       # read | operate | admin
    sha256 = "9f86d0..."   # flow tokens hash <token>
    name = "acme-ci"       # a label, for the operator (a token itself is never logged)
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flow.errors import ConfigurationError

#: The namespace of everything that names none.
DEFAULT = "default"
#: What a namespace's name may be (it travels in a header and a query string).
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
#: The request header that names a request's namespace.
HEADER = "X-Flow-Namespace"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_namespace(name: object) -> bool:
    """Whether ``name`` can name a namespace."""
    return isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) is not None


class Role(enum.IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    #: Read and list.
    READ = 1
    #: And start, signal, cancel, pause, resume, retry, rerun workflows; send events.
    OPERATE = 2
    #: And delete workflows; register and delete definitions; schedules, limits, batches.
    ADMIN = 3

    @classmethod
    def parse(cls, text: object, *, where: str) -> Role:
        """The role named ``text`` (``read``, ``operate``, ``admin``)."""
        if isinstance(text, str) and text.upper() in cls.__members__:
            return cls[text.upper()]
        raise ConfigurationError(f"{where}: role must be one of read, operate, admin, not {text!r}")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored and compared."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """One configured token: its digest, namespace and role (``namespace`` None: every
    namespace, as ``FLOW_API_TOKEN``)."""

    sha256: str = field(repr=False)
    namespace: str | None
    role: Role
    #: A label for people; never the token.
    name: str = ""


@dataclass(frozen=True)
class Quota:
    """A namespace's quotas; None: no bound."""

    #: Workflows in progress at once (a start that would pass it is refused with 429).
    max_running: int | None = None
    #: Starts per second, with a burst of one second's worth (at least one start).
    starts_per_s: float | None = None


@dataclass(frozen=True)
class TokensFile:
    """The tokens and quotas of a deployment."""

    tokens: tuple[TokenEntry, ...] = ()
    quotas: Mapping[str, Quota] = field(default_factory=dict)

    def quota(self, namespace: str) -> Quota:
        """``namespace``'s quota (no bounds when the file names none)."""
        return self.quotas.get(namespace, Quota())


def parse_tokens_file(text: str, *, source: str) -> TokensFile:
    """Read a tokens file (TOML when ``source`` ends in ``.toml``, JSON otherwise); a
    :class:`ConfigurationError` names the file and the entry that is wrong."""
    try:
        raw = tomllib.loads(text) if source.endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"{source}: not valid {'TOML' if source.endswith('.toml') else 'JSON'}: {e}") from e
    if not isinstance(raw, dict) or set(raw) - {"tokens", "namespaces"}:
        raise ConfigurationError(f"{source}: must be an object with 'tokens' and 'namespaces' only")
    tokens = tuple(_entry(item, where=f"{source}: tokens[{i}]") for i, item in enumerate(raw.get("tokens", [])))
    namespaces = raw.get("namespaces", {})
    if not isinstance(namespaces, dict):
        raise ConfigurationError(f"{source}: namespaces must be an object of namespace -> quotas")
    quotas = {name: _quota(value, where=f"{source}: namespaces.{name}") for name, value in namespaces.items()}
    return TokensFile(tokens, quotas)


def _entry(item: Any, *, where: str) -> TokenEntry:
    if not isinstance(item, dict) or set(item) - {"namespace", "role", "sha256", "name"}:
        raise ConfigurationError(f"{where}: must be an object of namespace, role, sha256 and name")
    namespace, digest = item.get("namespace"), item.get("sha256")
    if not is_namespace(namespace):
        raise ConfigurationError(f"{where}: namespace must match {NAME_PATTERN}, not {namespace!r}")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ConfigurationError(f"{where}: sha256 must be 64 lower-case hex digits (flow tokens hash <token>)")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ConfigurationError(f"{where}: name must be a string")
    return TokenEntry(digest, namespace, Role.parse(item.get("role"), where=where), name)


def _quota(value: Any, *, where: str) -> Quota:
    if not isinstance(value, dict) or set(value) - {"max_running", "starts_per_s"}:
        raise ConfigurationError(f"{where}: must be an object of max_running and starts_per_s")
    running, rate = value.get("max_running"), value.get("starts_per_s")
    if running is not None and (type(running) is not int or running < 1):
        raise ConfigurationError(f"{where}: max_running must be a whole number, 1 or more")
    if rate is not None and (type(rate) not in (int, float) or not 0 < rate < 1e6):
        raise ConfigurationError(f"{where}: starts_per_s must be a number above 0 and below 1000000")
    return Quota(running, None if rate is None else float(rate))


def entry_line(token: str, namespace: str, role: str, name: str = "") -> dict[str, str]:
    """The tokens-file entry of ``token`` (``flow tokens add``): what to paste in the file."""
    if not is_namespace(namespace):
        raise ConfigurationError(f"namespace must match {NAME_PATTERN}, not {namespace!r}")
    Role.parse(role, where="role")
    entry = {"namespace": namespace, "role": role.lower(), "sha256": hash_token(token)}
    return entry | ({"name": name} if name else {})


__all__ = [
    "DEFAULT",
    "HEADER",
    "NAME_PATTERN",
    "Quota",
    "Role",
    "TokenEntry",
    "TokensFile",
    "entry_line",
    "hash_token",
    "is_namespace",
    "parse_tokens_file",
]
