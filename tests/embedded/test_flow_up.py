"""``flow up`` serves what gunicorn serves: chunked request bodies included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from flow.testing import flow_up, wait_http
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from tests.conftest import wait_for

MAX_BODY_BYTES = 4096


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Where the module's ``flow up`` keeps its files; its log is ``up.log``."""
    return tmp_path_factory.mktemp("up")


@pytest.fixture(scope="module")
def url(base, http_server) -> Iterator[str]:
    definitions = write_definitions(
        base / "workflows",
        {
            **sample_definitions(http_server),
            "WaitOnly": {"name": "WaitOnly", "activities": [{"id": "approval", "wait_for": "approved"}]},
        },
    )
    with flow_up(base, embedded_env(base, definitions, FLOW_MAX_BODY_BYTES=str(MAX_BODY_BYTES))) as running:
        yield running


def chunks(body: bytes, size: int) -> Iterator[bytes]:
    """A generator body: ``requests`` sends it with ``Transfer-Encoding: chunked``."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def raw_post(url: str, head: bytes, body: bytes) -> bytes:
    """Send a hand-written request; return the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_chunked_post_starts_a_workflow(url):
    body = json.dumps({"name": "DummyWorkflow", "input_data": {"padding": "x" * 1000}}).encode()
    response = requests.post(
        f"{url}/workflows", data=chunks(body, 100), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 201, response.text
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    workflow_id = response.json()["id"]

    def ended() -> dict | None:
        workflow = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        return workflow if workflow["status"] != "In Progress" else None

    workflow = wait_for(ended, timeout_s=30, what="the chunked-started workflow to end")
    assert workflow["status"] == "Finished"
    assert workflow["input_data"] == {"padding": "x" * 1000}


def test_a_chunked_body_over_the_limit_is_413_and_starts_nothing(url):
    def stored() -> int:
        return len(requests.get(f"{url}/workflows", params={"limit": 500}, timeout=5).json()["items"])

    before = stored()
    body = json.dumps({"name": "DummyWorkflow", "input_data": {"padding": "x" * 2 * MAX_BODY_BYTES}}).encode()
    response = requests.post(
        f"{url}/workflows", data=chunks(body, 1000), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 413
    assert f"at most {MAX_BODY_BYTES} bytes" in response.json()["description"]
    assert stored() == before


def test_a_malformed_chunked_body_is_400(url):
    head = (
        b"POST /workflows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer = raw_post(url, head, b"zz\r\n{}\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400"), answer[:200]


def test_a_chunked_body_with_extensions_and_trailers_is_decoded(url):
    head = (
        b"POST /workflows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b'{"name": "RetryWorkflow"}'
    answer = raw_post(url, head, b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: y\r\n\r\n" % (len(body), body))
    assert answer.startswith(b"HTTP/1.0 201"), answer[:300]


def test_a_callback_tokens_request_line_is_logged_without_the_token(url, base):
    workflow_id = requests.post(f"{url}/workflows", json={"name": "WaitOnly"}, timeout=10).json()["id"]

    def token() -> str | None:
        steps = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()["activities"]
        return steps[0]["callback_token"]

    callback = wait_for(token, timeout_s=30, what="the wait's token")
    assert requests.post(f"{url}/signals/{callback}", json={"payload": 1}, timeout=10).status_code == 202
    log = base / "up.log"
    wait_for(lambda: "POST /signals/cb1." in log.read_text(), timeout_s=10, what="the request line")
    assert callback not in log.read_text()
    assert callback.rsplit(".", 1)[1] not in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_it_stops_gracefully_on_a_signal_even_if_started_with_sigint_ignored(tmp_path, http_server, sig):
    """A script's background job (``flow up &``) or ``nohup`` starts it with SIGINT ignored."""
    from flow.testing import ROOT, die_with_parent, free_port

    definitions = write_definitions(tmp_path / "workflows", sample_definitions(http_server))
    port = free_port()
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flow.cli", "up", "--port", str(port)],
            env={**os.environ, **embedded_env(tmp_path, definitions), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(then=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)),
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopping" in (tmp_path / "up.log").read_text()
