"""``flow tokens``: make the entries of the tokens file (``FLOW_TOKENS_FILE``, issue 27).

The file holds each token's SHA-256, never the token: ``flow tokens add`` makes a new
random token, prints it once (give it to its team), and adds its entry to the file;
``flow tokens hash`` prints the digest of a token you made yourself.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click

from flow.cli.app import EXIT_INVALID, fail, main
from flow.core.namespaces import entry_line, hash_token, parse_tokens_file
from flow.errors import ConfigurationError


@main.group()
def tokens() -> None:
    """Make API tokens for namespaces (FLOW_TOKENS_FILE)."""


@tokens.command("hash")
@click.argument("token", default="-")
def hash_command(token: str) -> None:
    """Print the SHA-256 of TOKEN (``-``: read it from stdin, so that it stays out of the shell's history)."""
    if token == "-":
        token = sys.stdin.readline().rstrip("\n")
    if not token:
        fail("no token given", EXIT_INVALID)
    click.echo(hash_token(token))


@tokens.command("add")
@click.option("--namespace", "namespace_", required=True, help="The namespace the token belongs to.")
@click.option("--role", type=click.Choice(["read", "operate", "admin"]), required=True, help="What it may do.")
@click.option("--name", default="", help="A label for people (e.g. the team or service).")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The tokens file (JSON, or TOML by its .toml name) to add the entry to; default: print the entry.",
)
def add_command(namespace_: str, role: str, name: str, path: Path | None) -> None:
    """Make a new random token for NAMESPACE with ROLE: print the token (once) and add its hashed entry."""
    token = secrets.token_urlsafe(32)
    try:
        entry = entry_line(token, namespace_, role, name)
        if path is not None:
            _add(path, entry)
    except ConfigurationError as e:
        fail(str(e), EXIT_INVALID)
    click.echo(token)
    if path is None:
        click.echo(json.dumps(entry), err=True)
    else:
        click.echo(f"added to {path} (the file holds its SHA-256 only); restart the API to load it", err=True)


def _add(path: Path, entry: dict[str, str]) -> None:
    """Append ``entry`` to the tokens file ``path`` (created if missing), checked after."""
    text = path.read_text() if path.exists() else ""
    if path.suffix == ".toml":
        lines = ["", "[[tokens]]", *(f"{key} = {json.dumps(value)}" for key, value in entry.items())]
        text = text.rstrip("\n") + "\n".join(lines) + "\n"
    else:
        document = json.loads(text) if text.strip() else {}
        document.setdefault("tokens", []).append(entry)
        text = json.dumps(document, indent=2) + "\n"
    parse_tokens_file(text, source=str(path))  # the file stays one the API reads
    path.write_text(text)
