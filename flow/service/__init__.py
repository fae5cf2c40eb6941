"""The starting side: what every door (the API, the CLI, the Dramatiq and AMQP start
messages) calls before the engine — definitions, starting, signalling, cancelling,
retrying, child workflows' starts and cron schedules. It writes workflows and sends
messages; it never decides (that is the engine's, :mod:`flow.engine`).
"""
