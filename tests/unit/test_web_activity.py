"""DoAnotherThingActivity fetches what a definition names: http(s) only, redirects to
http(s) only, and public addresses only unless ``allow_private`` says otherwise."""

from __future__ import annotations

import socket
from urllib.parse import quote

import pytest

from activities.dummy import DoAnotherThingActivity
from flow.wire.attempts import AttemptRequest
from flow.worker.execution import execute


def fetch(**config):
    request = AttemptRequest(
        workflow_id="wf",
        position=0,
        attempt=1,
        activity="DoAnotherThingActivity",
        config={"timeout_s": 5, **config},
        input_data={},
        outputs={},
    )
    return execute({"DoAnotherThingActivity": DoAnotherThingActivity}, request)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://127.0.0.1/x",
        "data:text/plain,hello",
        "/etc/passwd",
        "gopher://x",
    ],
)
def test_only_http_and_https_urls_are_fetched(url):
    result = fetch(url=url, allow_private=True)
    assert result.outcome == "PERMANENT_FAILURE"
    assert "must be an http:// or https:// URL" in result.error


def test_a_local_server_is_fetched_only_when_private_addresses_are_allowed(http_server):
    refused = fetch(url=f"{http_server}/status/200")
    assert refused.outcome == "PERMANENT_FAILURE"
    assert "127.0.0.1 is 127.0.0.1, not a public address" in refused.error
    allowed = fetch(url=f"{http_server}/status/200", allow_private=True)
    assert allowed.outcome == "SUCCEEDED"
    assert allowed.output["status"] == 200


def test_a_name_that_resolves_to_loopback_is_refused(http_server):
    port = http_server.rsplit(":", 1)[1]
    result = fetch(url=f"http://localhost:{port}/status/200")
    assert result.outcome == "PERMANENT_FAILURE"
    assert "not a public address" in result.error


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/etc/passwd", "data:,x"])
def test_a_redirect_to_another_scheme_is_refused(http_server, target):
    result = fetch(url=f"{http_server}/redirect?to={quote(target, safe='')}", allow_private=True)
    assert result.outcome == "PERMANENT_FAILURE"
    assert "only http and https are followed" in result.error
    assert target in result.error


def test_a_redirect_to_http_is_followed(http_server):
    result = fetch(url=f"{http_server}/redirect?to={quote(http_server + '/status/204', safe='')}", allow_private=True)
    assert result.outcome == "SUCCEEDED"
    assert result.output["status"] == 204


def test_status_codes_keep_their_meaning(http_server):
    assert fetch(url=f"{http_server}/status/404", allow_private=True).outcome == "PERMANENT_FAILURE"
    assert fetch(url=f"{http_server}/status/503", allow_private=True).outcome == "TEMPORARY_FAILURE"


def _pending_connections(listener):
    """How many connections the kernel completed on ``listener`` (which never accepts)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_a_private_address_is_refused_before_any_connection_is_made():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        result = fetch(url=f"http://127.0.0.1:{listener.getsockname()[1]}/")
        assert result.outcome == "PERMANENT_FAILURE"
        assert _pending_connections(listener) == 0
    finally:
        listener.close()


def test_open_and_closed_private_ports_give_one_error(http_server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    open_port = http_server.rsplit(":", 1)[1]
    answers = [fetch(url=f"http://127.0.0.1:{port}/status/200") for port in (open_port, closed_port)]
    assert [a.outcome for a in answers] == ["PERMANENT_FAILURE", "PERMANENT_FAILURE"]
    errors = [a.error.replace(str(port), "PORT") for a, port in zip(answers, (open_port, closed_port), strict=True)]
    assert errors[0] == errors[1]
