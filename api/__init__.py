"""The HTTP API: ``api.app.create_app`` builds the Falcon application.

``create_app`` is imported when first used, not with the package: ``flow run`` and the
other commands that only render views (``api.views``) would otherwise load the whole
application (Falcon, the middlewares, every resource) for nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
