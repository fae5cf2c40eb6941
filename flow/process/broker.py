"""The Dramatiq broker for a process, chosen by ``FLOW_BROKER_URL``.

RabbitMQ publishes wait for the broker's confirmation (docs/design.md, invariant 5; Dramatiq's
``confirm_delivery`` is off by default, and without it a publish into a dead
socket can vanish). ``stub://`` is the in-process broker of the embedded
commands: Dramatiq's ``StubBroker``, routing the partition queues straight to the
embedded engine (:class:`flow.engine.transport.InProcessBroker`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.process.inprocess import InProcessBroker
from flow.settings import Settings

logger = logging.getLogger(__name__)

#: The pika loggers that report a dead socket while a connection is closed.
_PIKA_CLOSE_LOGGERS = (
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.base_connection",
    "pika.adapters.blocking_connection",
)


class QuietlyClosingRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, whose :meth:`close` logs nothing about connections
    RabbitMQ already dropped.

    Each thread that publishes (a worker reporting a result) keeps a blocking
    connection that sends heartbeats only while it is used; one idle for a few
    heartbeat intervals has been closed by RabbitMQ by the time the worker stops. Closing
    it then makes pika log ``ERROR`` lines and tracebacks ("Connection reset by peer",
    "called on closed connection") at every ordinary SIGTERM; Dramatiq's own filter
    only hides "Broken pipe". Nothing is lost: nothing was left to send on them.
    """

    def close(self) -> None:
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
        broker = QuietlyClosingRabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    for queue in (settings.engine_queue, settings.activity_queue):
        broker.declare_queue(queue)
    return broker
