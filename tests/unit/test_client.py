"""The Python client against a scripted local HTTP stub: what it sends (bodies, keys,
query parameters, the token), when it tries again and how long it waits first, and the
typed errors it raises. The client against a real ``flow up`` is
tests/embedded/test_client.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flow.client import (
    NO_RETRIES,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    Transport,
    Unavailable,
    Unreachable,
)
from flow.client.retries import parse_retry_after

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
WORKFLOW = {"id": "wf-1", "name": "Orders", "status": "In Progress", "priority": 3, "created_at": NOW.isoformat()}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Close the connection without answering (the request did arrive).
    hang_up: bool = False


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class Stub:
    """Answers each request with the next scripted reply (the last one once the script
    runs out) and records what it was sent."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                stub.seen.append(
                    Seen(
                        self.command,
                        url.path,
                        parse_qs(url.query),
                        dict(self.headers),
                        json.loads(raw) if raw else None,
                    )
                )
                reply = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                if reply.hang_up:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Waits(list):
    """The sleep the transport calls between tries: records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_of(stub: Stub, waits: Waits | None = None, retry: RetryPolicy | None = None) -> Client:
    transport = Transport(stub.url, token="s3cret", retry=retry, sleep=waits if waits is not None else Waits())
    return Client(transport=transport)


# -- When to try again, and how long to wait: pure


@pytest.mark.parametrize(
    ("tried", "retry_after_s", "jitter", "expected"),
    [
        (1, None, 0.0, 0.1),  # the first wait: half of first_delay_s at the lowest jitter
        (1, None, 0.999999, 0.2),
        (2, None, 0.0, 0.2),  # doubling
        (3, None, 0.0, 0.4),
        (4, None, 0.999999, 1.6),
        (1, 7.0, 0.5, 7.0),  # Retry-After: exactly that, no jitter
        (1, 0.0, 0.5, 0.0),
        (1, 61.0, 0.5, None),  # over max_retry_after_s: raise at once, with the header's wait
        (5, None, 0.0, None),  # attempts spent
        (5, 1.0, 0.0, None),
    ],
)
def test_the_wait_before_each_try(tried, retry_after_s, jitter, expected):
    delay = RetryPolicy().delay_s(tried, retry_after_s=retry_after_s, jitter=jitter)
    assert delay == pytest.approx(expected, abs=1e-5) if expected is not None else delay is None


def test_the_backoff_stops_growing_at_max_delay_s():
    policy = RetryPolicy(attempts=20, first_delay_s=1, max_delay_s=3)
    assert policy.delay_s(10, retry_after_s=None, jitter=0.999999) == pytest.approx(3, abs=1e-5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 120 ", 120.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),  # already past: at once
        ("soon", None),  # unreadable: the backoff decides
        ("-5", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header, expected):
    assert parse_retry_after(header, now=NOW) == expected


def test_a_policy_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


# -- Against the stub


def test_a_start_turned_away_twice_with_retry_after_is_sent_again_with_the_same_key():
    busy = Reply(503, {"title": "Database unavailable", "description": "try again"}, {"Retry-After": "2"})
    with Stub(busy, busy, Reply(201, WORKFLOW)) as stub:
        waits = Waits()
        workflow = client_of(stub, waits).start("Orders", {"order": 7}, priority=2)
    assert workflow.id == "wf-1" and workflow.status == "In Progress"
    assert waits == [2.0, 2.0]
    keys = {s.body["idempotency_key"] for s in stub.seen}
    assert len(stub.seen) == 3 and len(keys) == 1 and next(iter(keys)).startswith("client-")
    assert stub.seen[0].body == {
        "name": "Orders",
        "input_data": {"order": 7},
        "idempotency_key": next(iter(keys)),
        "priority": 2,
    }
    assert stub.seen[0].headers["Authorization"] == "Bearer s3cret"


def test_a_caller_s_idempotency_key_is_sent_as_given():
    with Stub(Reply(200, WORKFLOW)) as stub:
        client_of(stub).start("Orders", idempotency_key="order-7")
    assert stub.seen[0].body["idempotency_key"] == "order-7"


def test_429_without_retry_after_backs_off_then_gives_up_with_the_problem_details():
    with Stub(Reply(429, {"title": "Too many starts", "description": "namespace quota"})) as stub:
        waits = Waits()
        with pytest.raises(Unavailable) as raised:
            client_of(stub, waits, RetryPolicy(attempts=3)).get("wf-1")
    assert len(stub.seen) == 3 and len(waits) == 2 and waits[0] < waits[1]
    error = raised.value
    assert (error.status, error.title, error.detail) == (429, "Too many starts", "namespace quota")


def test_a_retry_after_too_long_to_wait_raises_at_once_saying_when():
    with Stub(Reply(503, {"title": "Down"}, {"Retry-After": "3600"})) as stub:
        with pytest.raises(Unavailable) as raised:
            client_of(stub).get("wf-1")
    assert len(stub.seen) == 1 and raised.value.retry_after_s == 3600


def test_errors_that_say_what_to_fix_are_typed_and_never_retried():
    problem = {
        "title": "Invalid request",
        "description": "$.priority: must be 1 to 5",
        "errors": [{"path": "$.priority", "message": "must be 1 to 5"}],
    }
    with Stub(Reply(422, problem)) as stub:
        with pytest.raises(InvalidRequest) as raised:
            client_of(stub).start("Orders", priority=9)
    assert len(stub.seen) == 1
    assert raised.value.problems == problem["errors"] and raised.value.status == 422
    assert "$.priority: must be 1 to 5" in str(raised.value)
    with Stub(Reply(404, {"title": "Workflow not found", "description": "no workflow 'x'"})) as stub:
        with pytest.raises(NotFound, match="no workflow 'x'"):
            client_of(stub).get("x")
    with Stub(Reply(409, {"title": "Workflow already ended"})) as stub:
        with pytest.raises(Conflict, match="already ended"):
            client_of(stub).cancel("wf-1")


def test_a_read_is_sent_again_after_a_lost_reply_a_retry_is_not():
    """A retry that reached the server may have run: sending it again could run it twice."""
    with Stub(Reply(0, hang_up=True), Reply(200, WORKFLOW)) as stub:
        assert client_of(stub).get("wf-1").id == "wf-1"
    assert len(stub.seen) == 2
    with Stub(Reply(0, hang_up=True), Reply(202, WORKFLOW)) as stub:
        with pytest.raises(Unreachable):
            client_of(stub).retry("wf-1")
    assert len(stub.seen) == 1


def test_a_retry_is_sent_again_after_503_but_not_after_a_proxy_s_504():
    """A 503 comes from the API, which did nothing; a gateway's 504 may come after the
    API retried the workflow."""
    with Stub(Reply(503, {"title": "Database unavailable"}), Reply(202, WORKFLOW)) as stub:
        client_of(stub).retry("wf-1", timeout_s=0)
    assert len(stub.seen) == 2
    with Stub(Reply(504, {"title": "Gateway Timeout"}), Reply(202, WORKFLOW)) as stub:
        with pytest.raises(Unavailable):
            client_of(stub).retry("wf-1", timeout_s=0)
    assert len(stub.seen) == 1


def test_a_refused_connection_is_tried_again_even_for_a_retry():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    waits = Waits()
    client = Client(transport=Transport(url, retry=RetryPolicy(attempts=3), sleep=waits))
    with pytest.raises(Unreachable, match="cannot reach the API") as raised:
        client.retry("wf-1")
    assert raised.value.refused and raised.value.status == 0 and len(waits) == 2


def test_signal_carries_an_idempotency_key_and_its_payload():
    sent = {"workflow_id": "wf 1", "name": "approved", "signal_id": "sig-1"}
    with Stub(Reply(202, sent)) as stub:
        client = client_of(stub)
        assert client.signal("wf 1", "approved", {"by": "ana"}, idempotency_key="k1").signal_id == "sig-1"
        client.signal("wf 1", "approved")
    first, second = stub.seen
    assert first.path == "/workflows/wf%201/signals/approved" and first.body == {"payload": {"by": "ana"}}
    assert first.headers["Idempotency-Key"] == "k1"
    assert second.body is None and second.headers["Idempotency-Key"].startswith("client-")


def test_send_event_posts_type_id_and_data_and_a_resend_keeps_its_id():
    busy = Reply(503, {"title": "Busy"}, {"Retry-After": "0"})
    with Stub(busy, Reply(202, {"id": "evt-123", "type": "order.updated", "duplicate": True})) as stub:
        event = client_of(stub).send_event("order.updated", {"order_id": 7}, id="evt-123")
    assert (event.id, event.type, event.duplicate) == ("evt-123", "order.updated", True)
    assert [s.path for s in stub.seen] == ["/events", "/events"]
    assert stub.seen[0].body == stub.seen[1].body == {"type": "order.updated", "id": "evt-123", "data": {"order_id": 7}}
    with Stub(Reply(202, {})) as stub:
        made = client_of(stub).send_event("file.uploaded")
    assert made.id == stub.seen[0].body["id"] and made.id.startswith("client-") and not made.duplicate
    assert stub.seen[0].body["data"] == {}  # the API reads data as an object


def test_start_sends_search_attributes_with_times_as_iso_8601():
    due = datetime(2026, 12, 24, tzinfo=UTC)
    with Stub(Reply(201, WORKFLOW)) as stub:
        client_of(stub).start("Orders", attributes={"customer": "acme", "amount": 120.5, "vip": True, "due": due})
    assert stub.seen[0].body["attributes"] == {
        "customer": "acme",
        "amount": 120.5,
        "vip": True,
        "due": "2026-12-24T00:00:00+00:00",
    }


def test_list_follows_the_pages_and_sends_every_filter():
    summary = {**WORKFLOW, "status": "Failed"}
    pages = [
        Reply(200, {"items": [{**summary, "id": "a"}, {**summary, "id": "b"}], "next": "c1"}),
        Reply(200, {"items": [{**summary, "id": "c"}], "next": None}),
    ]
    with Stub(*pages) as stub:
        found = client_of(stub).list(
            status="Failed",
            input={"region": "eu"},
            attributes={"customer": "acme", "amount.gt": 100, "vip": True},
            page_size=2,
        )
        assert [w.id for w in found] == ["a", "b", "c"]
    first, second = (s.query for s in stub.seen)
    assert first == {
        "status": ["Failed"],
        "input": ['{"region":"eu"}'],
        "attr.customer": ["acme"],
        "attr.amount.gt": ["100"],
        "attr.vip": ["true"],
        "limit": ["2"],
    }
    assert second["cursor"] == ["c1"]


def test_the_url_and_token_come_from_the_environment_when_not_given(monkeypatch):
    with Stub(Reply(200, WORKFLOW)) as stub:
        monkeypatch.setenv("FLOW_API_URL", stub.url)
        monkeypatch.setenv("FLOW_API_TOKEN", "from-env")
        assert Client(retry=NO_RETRIES).get("wf-1").name == "Orders"
        Client(token="").get("wf-1")  # "" sends none
    assert stub.seen[0].headers["Authorization"] == "Bearer from-env"
    assert "Authorization" not in stub.seen[1].headers


@pytest.fixture
def no_env(monkeypatch) -> Iterator[None]:
    monkeypatch.delenv("FLOW_API_URL", raising=False)
    yield


def test_the_default_url_is_the_cli_s(no_env):
    assert Client(token="").transport.base_url == "http://127.0.0.1:8000"


def test_the_readme_shows_the_example_the_tests_run():
    from tests.conftest import ROOT

    example = (ROOT / "examples" / "python_client.py").read_text()
    code = example[example.index("import sys") :]
    assert f"```python\n{code}```" in (ROOT / "README.md").read_text()


def test_flow_rerun_sends_its_options_through_the_client(monkeypatch):
    from click.testing import CliRunner

    import flow.cli.remote as remote
    from flow.cli.app import main

    with Stub(Reply(202, WORKFLOW)) as stub:
        monkeypatch.setattr(remote, "api_client", lambda: client_of(stub))
        ran = CliRunner().invoke(main, ["rerun", "wf 1", "--from", "ship", "--version", "2", "--input", '{"x": 1}'])
    assert ran.exit_code == 0, ran.output
    assert [(s.method, s.path) for s in stub.seen] == [("POST", "/workflows/wf%201/rerun")]  # no wait: the 202 is all
    body = stub.seen[0].body
    assert (body["from"], body["version"], body["input_data"]) == ("ship", 2, {"x": 1})
    assert body["by"].startswith("cli.")
