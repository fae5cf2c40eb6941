"""API tokens are compared in constant time (issue 27's proof): every configured entry is
compared, by ``hmac.compare_digest`` over SHA-256 digests of one length, whichever entry
matches and whether any does, so the time taken says neither which entry matched nor how
much of a token did. A timing measurement on a shared machine would be noise; what is
checked is the shape of the comparison that makes the time independent of the token."""

from __future__ import annotations

import hmac

import pytest

import api.auth
from api.auth import Credentials
from flow.core.namespaces import Role, TokenEntry, TokensFile, hash_token

TOKENS = {f"tok-{i}-0123456789": (f"ns{i}", Role.OPERATE) for i in range(5)}


def credentials() -> Credentials:
    entries = tuple(TokenEntry(hash_token(t), ns, role, name=ns) for t, (ns, role) in TOKENS.items())
    return Credentials("operator-token-xyz", TokensFile(entries))


@pytest.fixture
def comparisons(monkeypatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare_digest(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api.auth.hmac, "compare_digest", compare_digest)
    return seen


@pytest.mark.parametrize(
    "given",
    ["tok-0-0123456789", "tok-4-0123456789", "operator-token-xyz", "tok-0-012345678", "", "x" * 10_000],
    ids=["first", "last", "operator", "all-but-one-character", "empty", "long"],
)
def test_every_entry_is_compared_by_digest_whatever_the_token(comparisons, given):
    found = credentials().authenticate(given)
    assert len(comparisons) == len(TOKENS) + 1  # every entry, the operator's too: no early exit
    assert {len(a) for a, _ in comparisons} == {len(b) for _, b in comparisons} == {64}  # digests, one length
    assert all(a == hash_token(given).encode() for a, _ in comparisons)  # never the token itself
    expected = TOKENS.get(given, (None, Role.ADMIN) if given == "operator-token-xyz" else None)
    if expected is None:
        assert found is None
    else:
        assert found is not None and (found.namespace, found.role) == expected


def test_a_principal_shows_no_token():
    found = credentials().authenticate("tok-1-0123456789")
    assert "tok-1-0123456789" not in repr(found) and hash_token("tok-1-0123456789") not in repr(found)
