# One image for every Libero Flow process: api, engine, worker and the migration step.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 flow

# Dependencies first (from setup.py), so code changes do not reinstall them.
COPY setup.py README.md ./
COPY flow/__init__.py flow/__init__.py
RUN pip install --no-cache-dir . && pip uninstall -y libero-flow

COPY flow flow
COPY actors actors
COPY activities activities
COPY api api
COPY workflows workflows
RUN pip install --no-cache-dir --no-deps .

USER flow
EXPOSE 8000
# Worker class, threads and workers (WEB_CONCURRENCY, default 2): api/gunicorn_conf.py.
CMD ["gunicorn", "--config", "python:api.gunicorn_conf", "--bind", "0.0.0.0:8000", "api.app:create_app()"]
