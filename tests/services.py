"""The suite's side of :mod:`flow.testing`: tests on real PostgreSQL and RabbitMQ.

Outside CI a missing service skips these tests with a loud message; with ``CI`` set
it fails them, so a green CI run always means the services were really exercised.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from flow.testing import ServicesUnavailable, check_services


def require_services() -> None:
    """Skip (outside CI) or fail (in CI) unless PostgreSQL and RabbitMQ answer."""
    try:
        check_services()
    except ServicesUnavailable as e:
        message = f"{e}; the real-service tests cannot run"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI requires it", pytrace=False)
        warnings.warn(message, stacklevel=1)
        sys.stderr.write(f"\n\n!!! SKIPPING real-service tests: {message} !!!\n\n")
        pytest.skip(message)
