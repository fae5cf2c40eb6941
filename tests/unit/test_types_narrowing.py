"""What the types made explicit where a value was read: a row whose required timestamp
is empty is unreadable (it no longer becomes a state with None in a datetime field), and
a page cursor is a pair before it is unpacked, and the CLI's API client answers a JSON
object ({} for a reply without a body, a 204)."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import falcon
import pytest

from api.resources.workflows import _decode_cursor, _encode_cursor
from flow.persistence.mapping import WORKFLOW_COLUMNS, signal_from_row, workflow_from_row

COLUMNS = [c.strip() for c in WORKFLOW_COLUMNS.split(",")]


def _row(**values: object) -> tuple[object, ...]:
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update(
        id="w1",
        definition_name="d",
        definition_version=1,
        partition=0,
        status="In Progress",
        started=True,
        run=1,
        input_data="{}",
        config="{}",
        created_at="2026-01-02T03:04:05",
        version=1,
        updated_at="2026-01-02T03:04:05",
        paused=False,
        priority=3,
    )
    row.update(values)
    return tuple(row[c] for c in COLUMNS)


def test_a_row_with_its_timestamps_reads():
    stored = workflow_from_row(_row(), [])
    assert stored.state.created_at.isoformat() == "2026-01-02T03:04:05"


@pytest.mark.parametrize("column", ["created_at", "updated_at"])
def test_a_row_whose_required_timestamp_is_empty_is_unreadable(column):
    with pytest.raises(ValueError, match="required timestamp"):
        workflow_from_row(_row(**{column: None}), [])


def test_a_signal_in_the_inbox_without_its_time_is_unreadable():
    # signal_id, name, received_at, payload, consumed_by, position, run, size, digest
    with pytest.raises(ValueError, match="required timestamp"):
        signal_from_row(("s1", "go", None, None, None, None, None, 0, None))


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_a_cursor_this_api_wrote_reads_back():
    created_at = datetime(2026, 1, 2, 3, 4, 5)
    assert _decode_cursor(_encode_cursor(created_at, "w1")) == (created_at, "w1")


@pytest.mark.parametrize(
    "value",
    [
        # An object of two keys unpacked as a pair (its keys) read as a cursor before.
        {"2026-01-02T03:04:05": 1, "w1": 2},
        ["2026-01-02T03:04:05"],
        ["2026-01-02T03:04:05", "w1", "extra"],
        "ab",
        7,
        None,
    ],
)
def test_a_cursor_that_is_not_a_pair_is_refused(value):
    with pytest.raises(falcon.HTTPError):
        _decode_cursor(_cursor(value))


def test_the_api_client_reads_a_reply_without_a_body_as_an_empty_object():
    import http.server
    import threading

    from flow.client import Transport

    class NoContent(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Transport(f"http://127.0.0.1:{server.server_address[1]}", token=None)
        assert client.request("DELETE", "/workflows/w1") == {}
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
