"""Logging set-up for every entry point: text by default, JSON lines with ``FLOW_LOG_FORMAT=json``."""

from __future__ import annotations

import json
import logging
import sys

from flow.settings import Settings

_CONTEXT_FIELDS = ("workflow_id", "activity", "attempt")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """Human-readable lines, ending with the workflow and activity they concern."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in _CONTEXT_FIELDS if hasattr(record, name))
        return f"{line} [{context}]" if context else line


def configure_logging(settings: Settings, *, default_level: str | None = None) -> None:
    """Configure the root logger; ``default_level`` applies unless ``FLOW_LOG_LEVEL`` is set."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((settings.log_level or default_level or "INFO").upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
