"""One process's assembly and its doors: the :class:`~flow.process.runtime.Runtime`
(settings, database, broker, definitions, the service), the broker, the Dramatiq tasks
and the AMQP start consumer (the doors that messages come in by), the embedded mode
(everything in one process), logging and a graceful shutdown.
"""
