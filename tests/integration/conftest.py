"""Module-wide PostgreSQL database and queue prefix for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import new_database, new_queue_prefix


@pytest.fixture(scope="module")
def pg_url(services) -> Iterator[str]:
    with new_database() as url:
        yield url


@pytest.fixture(scope="module")
def queue_prefix(services) -> Iterator[str]:
    with new_queue_prefix() as prefix:
        yield prefix
