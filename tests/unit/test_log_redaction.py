"""Callback tokens are credentials: no log line shows one whole, whoever writes the
line (our loggers, Dramatiq's, gunicorn's) and wherever the token sits in it (the
message, its arguments, an exception's text)."""

from __future__ import annotations

import json
import logging

import pytest
from gunicorn.config import Config

from api import gunicorn_conf
from api.serving import RedactingLogger
from flow.core.callback_tokens import REDACTED, CallbackTokens, redact
from flow.settings import Settings
from tests.conftest import configured_logging

TOKENS = CallbackTokens(b"k" * 32)
TOKEN = TOKENS.token("8a1f4c2e-0000-4000-8000-000000000001", 3, 2)
OTHER = TOKENS.token("8a1f4c2e-0000-4000-8000-000000000002", 0, 1)
SIGNATURE = TOKEN.rsplit(".", 1)[1]


def test_redact_hides_every_tokens_signature_and_keeps_its_name():
    text = f"POST /signals/{TOKEN} and {{'token': '{OTHER}'}}"
    redacted = redact(text)
    assert TOKEN not in redacted and OTHER not in redacted
    assert SIGNATURE not in redacted
    name = TOKEN.rsplit(".", 1)[0]
    assert f"/signals/{name}.{REDACTED} and" in redacted


def test_redact_hides_a_signature_cut_short_and_leaves_other_text_alone():
    cut = TOKEN[: len(TOKEN) - 20]
    assert SIGNATURE[:20] not in redact(f'body b\'{{"token": "{cut}')
    assert redact("GET /workflows?limit=5 cb1 done") == "GET /workflows?limit=5 cb1 done"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_line_of_an_entry_point_shows_a_token(log_format):
    with configured_logging(Settings.from_env({"FLOW_LOG_FORMAT": log_format})) as stream:
        logging.getLogger("flow.http").info('127.0.0.1 "POST /signals/%s HTTP/1.1" 202 -', TOKEN)
        logging.getLogger("dramatiq.worker.WorkerThread").error(
            "Failed to process message %s with unhandled exception.", {"token": TOKEN, "payload": None}
        )
        try:
            raise ValueError(f"no such token {TOKEN}")
        except ValueError:
            logging.getLogger("flow.engine").exception("dead-lettering a message")
    lines = stream.getvalue()
    assert "POST /signals/cb1." in lines and "Failed to process message" in lines and "ValueError" in lines
    assert TOKEN not in lines and SIGNATURE not in lines
    if log_format == "json":
        assert len([json.loads(line) for line in lines.splitlines() if line.startswith("{")]) == 3


def test_gunicorns_error_and_access_logs_show_no_token(tmp_path):
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    logger = RedactingLogger(cfg)
    try:
        logger.error("bad request line %r", f"POST /signals/{TOKEN}")
        logger.access_log.info('127.0.0.1 - - "POST /signals/%s HTTP/1.1" 202 -', TOKEN)
        for handler in logger.error_log.handlers + logger.access_log.handlers:
            handler.flush()
        written = (tmp_path / "error.log").read_text() + (tmp_path / "access.log").read_text()
    finally:
        for log in (logger.error_log, logger.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
                handler.close()
    assert written.count("/signals/cb1.") == 2
    assert TOKEN not in written and SIGNATURE not in written


def test_gunicorn_is_configured_with_the_redacting_logger():
    cfg = Config()
    cfg.set("logger_class", gunicorn_conf.logger_class)
    assert cfg.logger_class is RedactingLogger
