"""Logging set-up for every entry point: text by default, JSON lines with ``FLOW_LOG_FORMAT=json``.

Every line is redacted on its way out: a callback token is a credential (whoever holds
it ends its wait), and it turns up in lines nobody wrote for it — ``flow up``'s request
lines (``POST /signals/cb1.…``), Dramatiq's line for a dead-lettered message (its
arguments), an exception's text. So the redaction is where every line is formatted
(:class:`RedactingFormatter`), the whole line (message, arguments, traceback) through
one function (:func:`flow.core.callback_tokens.redact`), rather than at each call
that might log one. gunicorn's own loggers get the same (``api/serving.py``).
"""

from __future__ import annotations

import json
import logging
import sys

from flow.core.callback_tokens import redact
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


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then hides every callback token's signature in the line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def __repr__(self) -> str:
        return f"<RedactingFormatter {self.inner!r}>"

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def redact_handlers(logger: logging.Logger) -> None:
    """Make every handler of ``logger`` redact its lines (for loggers configured by
    someone else, such as gunicorn's)."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter or logging.Formatter()))


def configure_logging(settings: Settings, *, default_level: str | None = None) -> None:
    """Configure the root logger; ``default_level`` applies unless ``FLOW_LOG_LEVEL`` is set."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((settings.log_level or default_level or "INFO").upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
