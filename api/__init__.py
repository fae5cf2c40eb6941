"""The HTTP API: ``api.app.create_app`` builds the Falcon application."""

from api.app import create_app

__all__ = ["create_app"]
