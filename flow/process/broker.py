"""The Dramatiq broker for a process, chosen by ``FLOW_BROKER_URL``.

RabbitMQ publishes wait for the broker's confirmation (docs/design.md, invariant 5; Dramatiq's
``confirm_delivery`` is off by default, and without it a publish into a dead
socket can vanish). ``stub://`` is the in-process broker of the embedded
commands: Dramatiq's ``StubBroker``, routing the partition queues straight to the
embedded engine (:class:`flow.engine.transport.InProcessBroker`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.errors import BrokerBlocked
from flow.loops import BackgroundLoop
from flow.process.inprocess import InProcessBroker
from flow.settings import Settings

logger = logging.getLogger(__name__)

#: The pika loggers that report a dead socket while a connection is closed.
_PIKA_CLOSE_LOGGERS = (
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.base_connection",
    "pika.adapters.blocking_connection",
)


#: A routing key no queue is bound to: a probe publish is confirmed, then dropped.
PROBE_ROUTING_KEY = "flow.broker.probe"


def takes_publishes(parameters: pika.ConnectionParameters) -> bool:
    """Does RabbitMQ take a publish now? False if it blocked the probe's connection for its
    ``blocked_connection_timeout``; connection errors are raised. RabbitMQ blocks a
    connection only once it publishes, and takes (and confirms) the publish that blocked
    it: the probe sends two messages that no queue takes and waits for their confirms."""
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(2):
            channel.basic_publish("", PROBE_ROUTING_KEY, b"")
    except pika.exceptions.ConnectionBlockedTimeout:
        return False
    finally:
        # Closing a connection that timed out raises that timeout again.
        with contextlib.suppress(pika.exceptions.AMQPError):
            if connection.is_open:
                connection.close()
    return True


class _BlockedTimeoutSaidOnce(logging.Filter):
    """pika logs each blocked timeout as an ERROR ("Unexpected connection close detected")
    in the thread that published; :class:`BlockedPublishes` says it once, as a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ConnectionBlockedTimeout" not in record.getMessage()


class BlockedPublishes:
    """Whether RabbitMQ blocks this process's publishes, learnt from a publish that timed out.

    RabbitMQ tells a connection it is blocked (a memory or disk alarm) only once it
    publishes, and then reads nothing more from it until the alarm clears. pika's
    ``blocked_connection_timeout`` closes such a connection after ``timeout_s``. From then
    on every publish is refused at once (:class:`~flow.errors.BrokerBlocked`) instead of each
    caller waiting out a timeout of its own, and one thread probes
    (:func:`takes_publishes`, each probe waiting ``timeout_s`` at most) until RabbitMQ takes
    a publish again: it is waiting in a probe when the alarm clears, so the refusals end
    within a round trip of that (or a publish that succeeds ends them).
    """

    def __init__(self, timeout_s: float, probe: Callable[[], bool]) -> None:
        self.timeout_s = timeout_s
        self.probe = probe
        self._blocked = threading.Event()
        self._prober = BackgroundLoop("flow-broker-blocked", self._probe, every_s=0.1)

    def __repr__(self) -> str:
        return f"<BlockedPublishes timeout {self.timeout_s:g} s blocked={self.blocked}>"

    @property
    def blocked(self) -> bool:
        """Does RabbitMQ block this process's publishes (as last seen)?"""
        return self._blocked.is_set()

    def saw_block(self) -> None:
        """A publish waited ``timeout_s`` on a blocked connection."""
        if not self._blocked.is_set():
            self._blocked.set()
            logger.warning(
                "RabbitMQ blocks this process's publishes (a memory or disk alarm): they are refused until it "
                "takes a probe again"
            )
        self._prober.start()

    def published(self) -> None:
        """A publish was confirmed: RabbitMQ takes them again."""
        if self._blocked.is_set():
            self._blocked.clear()
            logger.warning("RabbitMQ takes this process's publishes again")

    def check(self) -> None:
        """Raise :class:`~flow.errors.BrokerBlocked` while publishes are refused."""
        if self._blocked.is_set():
            raise BrokerBlocked(self.timeout_s)

    def stop(self) -> None:
        self._prober.stop(self.timeout_s + 1)

    def _probe(self) -> None:
        if self._blocked.is_set() and self.probe():
            self.published()


class QuietlyClosingRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, whose publishes give up on a blocked broker after
    ``blocked_timeout_s`` (:class:`BlockedPublishes`), and whose :meth:`close` logs nothing
    about connections RabbitMQ already dropped.

    Dramatiq tries a publish that failed on its connection six times, each on a new one:
    six timeouts. The first one that timed out blocked ends the publish here instead.

    Each thread that publishes (a worker reporting a result) keeps a blocking
    connection that sends heartbeats only while it is used; one idle for a few
    heartbeat intervals has been closed by RabbitMQ by the time the worker stops. Closing
    it then makes pika log ``ERROR`` lines and tracebacks ("Connection reset by peer",
    "called on closed connection") at every ordinary SIGTERM; Dramatiq's own filter
    only hides "Broken pipe". Nothing is lost: nothing was left to send on them.
    """

    def __init__(self, *, blocked_timeout_s: float, **options: Any) -> None:
        super().__init__(**options)
        everyone = self.parameters if isinstance(self.parameters, list) else [self.parameters]
        for parameters in everyone:
            parameters.blocked_connection_timeout = blocked_timeout_s
        self.blocked = BlockedPublishes(blocked_timeout_s, functools.partial(takes_publishes, everyone[0]))
        pika_logger = logging.getLogger("pika.adapters.blocking_connection")
        if not any(isinstance(f, _BlockedTimeoutSaidOnce) for f in pika_logger.filters):
            pika_logger.addFilter(_BlockedTimeoutSaidOnce())

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        self.blocked.check()
        self.state.publishing = True
        try:
            sent = super().enqueue(message, delay=delay)
        finally:
            self.state.publishing = False
        self.blocked.published()
        return sent

    @property
    def connection(self) -> pika.BlockingConnection:
        # Each of Dramatiq's attempts to publish asks for the thread's connection: the one
        # after a blocked timeout is refused here.
        if getattr(self.state, "publishing", False):
            self.blocked.check()
        return RabbitmqBroker.connection.fget(self)  # type: ignore[attr-defined]

    @connection.deleter
    def connection(self) -> None:
        # Dramatiq drops the connection while handling the error that broke it.
        if isinstance(sys.exc_info()[1], pika.exceptions.ConnectionBlockedTimeout):
            self.blocked.saw_block()
        RabbitmqBroker.connection.fdel(self)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.blocked.stop()
        with _pika_silenced_in_this_thread():
            super().close()


class _ThisThreadOnly(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.dropped += 1
        return False


@contextlib.contextmanager
def _pika_silenced_in_this_thread() -> Iterator[None]:
    silence = _ThisThreadOnly()
    loggers = [logging.getLogger(name) for name in _PIKA_CLOSE_LOGGERS]
    for each in loggers:
        each.addFilter(silence)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(silence)
        if silence.dropped:
            logger.debug("closing the broker: %d pika log records about dropped connections left out", silence.dropped)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings``; the caller decides whether it becomes global."""
    if settings.uses_in_process_broker:
        broker: dramatiq.Broker = InProcessBroker()
    else:
        broker = QuietlyClosingRabbitmqBroker(
            url=settings.broker_url, confirm_delivery=True, blocked_timeout_s=settings.broker_blocked_timeout_s
        )
    for queue in (settings.engine_queue, settings.activity_queue):
        broker.declare_queue(queue)
    return broker
