"""A flood of starts against the API (issue 26, "Load it must shed"): ``clients`` threads,
each on a keep-alive connection of its own, send ``POST /workflows`` at an offered rate
whatever the answers, and every answer is kept: its status, its ``Retry-After``, how
long it took, or that none came in time. Shared by ``python -m bench.flood`` and
``tests/integration/test_flood.py``.

The starts are paced open-loop: start ``i`` is due at ``i / rate`` seconds, on client
``i % clients``; a client that is late sends its next start at once, so a slow API is
offered the same starts, later (how late is reported), never fewer.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

#: What a shed start is answered.
SHED = (429, 503)
#: What sending on a kept-alive connection the server closed while it was idle raises.
_IDLE_CLOSED = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


@dataclass(frozen=True)
class Answer:
    """One start as the client saw it."""

    #: The HTTP status, or None when no answer came (``error`` says why).
    status: int | None
    latency_s: float
    #: Seconds the start was sent after it was due.
    late_s: float
    retry_after: str | None = None
    workflow_id: str | None = None
    #: Why no workflow: the answer's ``title``, or what went wrong when none came.
    error: str | None = None
    #: Sent again on a new connection: the server had closed the idle kept-alive one.
    resent: bool = False


@dataclass
class Flood:
    """Every answer of one flood, and the figures a report wants."""

    answers: list[Answer] = field(default_factory=list)
    #: Seconds from the first start due to the last answer.
    seconds: float = 0.0

    @property
    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.answers)

    @property
    def accepted(self) -> list[str]:
        """Ids of the workflows the API created (201)."""
        return [a.workflow_id for a in self.answers if a.status == 201 and a.workflow_id]

    @property
    def shed(self) -> list[Answer]:
        return [a for a in self.answers if a.status in SHED]

    @property
    def shed_without_retry_after(self) -> list[Answer]:
        return [a for a in self.shed if not (a.retry_after or "").isdigit()]

    @property
    def unanswered(self) -> list[Answer]:
        """Starts with no answer: a client timeout or a connection the server dropped."""
        return [a for a in self.answers if a.status is None]

    @property
    def unexpected(self) -> list[Answer]:
        """Answers that are neither a start (201) nor a shed one (429, 503): a 500 above all."""
        return [a for a in self.answers if a.status is not None and a.status != 201 and a.status not in SHED]

    def latency_ms(self, percent: int) -> float:
        """The ``percent`` percentile (1 to 99) of the answered starts' latency, in ms."""
        return _percentile([a.latency_s for a in self.answers if a.status is not None], percent) * 1000

    def summary(self) -> dict[str, Any]:
        statuses = self.statuses
        return {
            "offered": len(self.answers),
            "seconds": round(self.seconds, 2),
            "offered_per_s": round(len(self.answers) / self.seconds, 1) if self.seconds else 0.0,
            "accepted": statuses[201],
            "shed": {str(code): statuses[code] for code in SHED},
            "shed_reasons": dict(Counter(f"{a.status} {a.error}" for a in self.shed)),
            "shed_without_retry_after": len(self.shed_without_retry_after),
            "unexpected": dict(Counter(f"{a.status} {a.error}" for a in self.unexpected)),
            "unanswered": len(self.unanswered),
            "resent_after_idle_close": sum(1 for a in self.answers if a.resent),
            "unanswered_reasons": dict(Counter(a.error or "" for a in self.unanswered).most_common(5)),
            "latency_p50_ms": round(self.latency_ms(50), 1),
            "latency_p99_ms": round(self.latency_ms(99), 1),
            "latency_max_ms": round(max((a.latency_s for a in self.answers), default=0.0) * 1000, 1),
            "sent_late_p99_s": round(_percentile([a.late_s for a in self.answers], 99), 3),
        }


def _json_object(payload: bytes) -> dict[str, Any]:
    """The reply's JSON object; empty when it is none (gunicorn's own error pages are HTML)."""
    try:
        reply = json.loads(payload)
    except ValueError:
        return {}
    return reply if isinstance(reply, dict) else {}


def _percentile(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def flood_from_processes(
    url: str, name: str, *, total: int, seconds: float, clients: int, processes: int, timeout_s: float = 10.0
) -> Flood:
    """:func:`flood` from ``processes`` processes, each with its share of the starts and
    clients at its share of the rate: one Python process's clients share one GIL, and on
    a busy machine they could not send 1,700 starts a second."""
    shares = [(total * (k + 1)) // processes - (total * k) // processes for k in range(processes)]
    threads = [(clients * (k + 1)) // processes - (clients * k) // processes for k in range(processes)]
    context = multiprocessing.get_context("spawn")  # not fork: the caller has threads of its own
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = [
            pool.submit(flood, url, name, total=share, seconds=seconds, clients=n, timeout_s=timeout_s)
            for share, n in zip(shares, threads, strict=True)
        ]
        results = [part.result() for part in parts]
    return Flood([a for r in results for a in r.answers], max(r.seconds for r in results))


def flood(
    url: str,
    name: str,
    *,
    total: int,
    seconds: float,
    clients: int,
    timeout_s: float = 10.0,
    input_data: dict[str, Any] | None = None,
    on_answer: Callable[[Answer], object] | None = None,
) -> Flood:
    """Send ``total`` starts of the definition ``name`` to the API at ``url`` over
    ``seconds``, from ``clients`` threads; return every answer (each also given to
    ``on_answer`` as it comes, from the client's thread)."""
    body = json.dumps({"name": name, "input_data": input_data or {}}).encode()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rate = total / seconds
    answers: list[list[Answer]] = [[] for _ in range(clients)]
    t0 = time.monotonic() + 0.2  # every client running before the first is due

    def post(conn: http.client.HTTPConnection, sent: float, due: float) -> Answer:
        conn.request("POST", "/workflows", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.will_close:
            conn.close()
        status, retry_after = response.status, response.getheader("Retry-After")
        reply = _json_object(payload)
        workflow_id, error = (reply.get("id"), None) if status == 201 else (None, reply.get("title"))
        return Answer(status, time.monotonic() - sent, sent - due, retry_after, workflow_id, error)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        for i in range(k, total, clients):
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sent = time.monotonic()
            reused = conn.sock is not None
            try:
                try:
                    answer = post(conn, sent, due)
                except _IDLE_CLOSED:
                    if not reused:
                        raise
                    # gunicorn closed the kept-alive connection while it was idle (its
                    # ``keepalive``, 2 s: a starved client thread can be idle that long) as
                    # the request went out: it never read it. Sent again on a new
                    # connection, as HTTP clients do; check_settled would find a start
                    # stored twice.
                    conn.close()
                    answer = replace(post(conn, sent, due), resent=True)
            except (OSError, http.client.HTTPException) as e:  # a timeout is an OSError
                answer = Answer(None, time.monotonic() - sent, sent - due, error=type(e).__name__)
                conn.close()
            answers[k].append(answer)
            if on_answer is not None:
                on_answer(answer)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), name=f"flood-{k}", daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Flood([a for each in answers for a in each], time.monotonic() - t0)
