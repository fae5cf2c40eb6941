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
import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import dramatiq.worker
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.core.pools import pool_of
from flow.engine.transport import FIFO_WARNING, fifo_queue_refused, queue_arguments
from flow.errors import BrokerBlocked
from flow.loops import BackgroundLoop, poll_until
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


class _DelayedMessageRefusedSaidPlainly(logging.Filter):
    """Dramatiq's consumer moves a delayed message that came due (a retry) from ``Q.DQ`` to
    ``Q``; refused while RabbitMQ blocks, it logs ``CRITICAL`` "Consumer encountered an
    unexpected error" with a traceback, every few seconds while the block lasts. Nothing is
    lost (the consumer restarts, its delayed messages go back to their queue): said so, as a
    warning, at most once a minute (the repeats at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self._said_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, BrokerBlocked):
            return True
        now = time.monotonic()
        again = self._said_at is not None and now - self._said_at < 60
        self._said_at = self._said_at if again else now
        record.levelno, record.levelname = (logging.DEBUG, "DEBUG") if again else (logging.WARNING, "WARNING")
        record.msg = (
            "a delayed message (a retry) came due while RabbitMQ blocks publishes (a memory or disk alarm): "
            "Dramatiq's consumer gives its delayed messages back to RabbitMQ and restarts in %g s; each will "
            "be published again when due once RabbitMQ takes publishes"
        )
        record.args = (dramatiq.worker.CONSUMER_RESTART_DELAY_SECS,)
        record.exc_info = record.exc_text = None
        return True


class _BlockedNoticeSaidOnce(logging.Filter):
    """pika logs a WARNING for each connection RabbitMQ blocks ("Received ... Connection.Blocked
    from broker"): one per thread that publishes. The process says it once instead
    (:class:`BlockedPublishes`; the engine's transport when told)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection.Blocked" not in record.getMessage()


def quiet_blocked_logs() -> None:
    """Install, once per process, the filters that say a block once and plainly."""
    for name, kind in (
        ("pika.adapters.blocking_connection", _BlockedTimeoutSaidOnce),
        ("pika.connection", _BlockedNoticeSaidOnce),
        ("dramatiq.worker.ConsumerThread", _DelayedMessageRefusedSaidPlainly),
    ):
        each = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in each.filters):
            each.addFilter(kind())


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
        self._unreachable = False  # the last probe could not connect (said once)
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
        if not self._blocked.is_set():
            return
        try:
            took = self.probe()
        except Exception as e:  # RabbitMQ away (restarted to clear its alarm): said once, not every 0.1 s
            if not self._unreachable:
                self._unreachable = True
                logger.warning("probing RabbitMQ failed (%s: %s); probing until it answers", type(e).__name__, e)
            return
        self._unreachable = False
        if took:
            self.published()


class QuietlyClosingRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, which declares the worker pools' queues with priorities
    (:meth:`_declare_queue`), whose publishes give up on a blocked broker after
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

    def __init__(self, *, blocked_timeout_s: float, activity_queue: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        #: The default pool's queue: it and the pools' queues beside it take priorities
        #: (None: no queue does).
        self.activity_queue = activity_queue
        #: Pool queues declared by an earlier release without priorities (used as they are).
        self.fifo_queues: set[str] = set()
        everyone = self.parameters if isinstance(self.parameters, list) else [self.parameters]
        for parameters in everyone:
            parameters.blocked_connection_timeout = blocked_timeout_s
        self.blocked = BlockedPublishes(blocked_timeout_s, functools.partial(takes_publishes, everyone[0]))
        quiet_blocked_logs()

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if delay is not None:
            return self._enqueue_retry(message, delay)
        return self._enqueue(message, delay)

    def _enqueue_retry(self, message: dramatiq.Message[Any], delay: int) -> dramatiq.Message[Any]:
        """A delayed message is a retry of the message in hand (Dramatiq's Retries; nothing else
        here sends one): while RabbitMQ blocks, wait until it takes it, as the worker's
        reports do. Raising would make Dramatiq log CRITICAL and acknowledge the message, its
        retry lost; waiting keeps it unacknowledged (should the process be killed meanwhile,
        RabbitMQ delivers it again)."""
        said = False

        def send() -> dramatiq.Message[Any] | None:
            nonlocal said
            try:
                return self._enqueue(message, delay)
            except BrokerBlocked as e:
                if not said:
                    said = True
                    logger.warning(
                        "the retry of %s (message %s) waits: %s; it will be published once RabbitMQ takes publishes, "
                        "the message unacknowledged until then",
                        message.actor_name,
                        message.message_id,
                        e,
                    )
                return None

        return poll_until(send, timeout_s=None, every_s=0.2, max_every_s=2.0, what="RabbitMQ to take a retry")

    def _enqueue(self, message: dramatiq.Message[Any], delay: int | None) -> dramatiq.Message[Any]:
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

    def _declare_queue(self, queue_name: str) -> Any:
        """Declare a worker pool's queue with ``x-max-priority`` (docs/design.md, "Worker
        pools"), as the engine does; one an earlier release declared without it is used
        as it is, first in, first out (RabbitMQ refuses other arguments: 406)."""
        pool = self.activity_queue is not None and pool_of(self.activity_queue, queue_name) is not None
        if not pool or queue_name in self.fifo_queues:
            return super()._declare_queue(queue_name)
        arguments = queue_arguments(queue_name, priorities=True)
        try:
            return self.channel.queue_declare(queue=queue_name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as e:
            if fifo_queue_refused(e) != queue_name:
                raise
            del self.channel  # closed by RabbitMQ: the next use opens another
            logger.warning(FIFO_WARNING, queue_name)
            self.fifo_queues.add(queue_name)
            return super()._declare_queue(queue_name)


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
            url=settings.broker_url,
            confirm_delivery=True,
            blocked_timeout_s=settings.broker_blocked_timeout_s,
            activity_queue=settings.activity_queue,
        )
    for queue in (settings.engine_queue, settings.activity_queue):
        broker.declare_queue(queue)
    return broker
