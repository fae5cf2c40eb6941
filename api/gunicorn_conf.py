"""gunicorn settings of the API, the same wherever it runs (README, Procfile, compose,
Dockerfile, tests): ``gunicorn -c python:api.gunicorn_conf --bind ADDRESS 'api.app:create_app()'``.

A client that sends its request slowly (half a body, or headers a byte at a time)
must not stall the others. gunicorn's default ``sync`` worker serves one request at
a time: one such client stalls the process. So: gunicorn's threaded worker, with a
deadline on reading each request (``api/serving.py`` says why gunicorn's own settings
cannot do it), and as many threads per process as the database pool has connections
(``FLOW_DB_POOL_SIZE``, 16), so that each request in progress has one.
"""

from __future__ import annotations

import os

#: gunicorn's threaded worker plus a read deadline per request (api/serving.py).
worker_class = "api.serving.BoundedReadWorker"
#: Threads per worker process: requests in progress at once, slow clients included.
threads = 16
#: Worker processes: ``WEB_CONCURRENCY`` (the platforms' convention, which gunicorn
#: itself reads for its default), else 2.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
#: Log lines hide callback tokens, the access log's request lines too (api/serving.py).
logger_class = "api.serving.RedactingLogger"
#: No control socket under ``~/.gunicorn/`` (gunicorn 27 creates one by default).
control_socket_disable = True
