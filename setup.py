from setuptools import find_packages, setup

setup(
    name="libero-flow",
    version="0.1.0",
    description="JSON-defined, durable workflows on Dramatiq, Pykka, Peewee and Falcon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["flow*", "actors*", "activities*", "api*"]),
    package_data={"api": ["static/*"]},
    include_package_data=True,
    install_requires=[
        "dramatiq[rabbitmq]>=2.2,<3",
        "pykka>=4.5,<5",
        "peewee>=4.5,<5",
        "psycopg2-binary>=2.9",
        "falcon>=4.4,<5",
        # api/serving.py extends gunicorn 27's threaded worker: a new major version is checked first.
        "gunicorn>=27,<28",
        "jsonschema>=4.20",
        # `when` conditions (flow/core/graph.py): the JMESPath reference implementation, pure Python.
        "jmespath>=1.0,<2",
        # Cron schedules (flow/core/schedules.py says why this library): pure Python, zoneinfo-aware.
        "cronsim>=2.6,<3",
        # IANA time zones for zoneinfo where the system has none (slim images).
        "tzdata",
        "click>=8.1",
        "rich>=13",
        "prometheus-client>=0.20",
        # Tracing (flow/observability/tracing.py): the API alone, a no-op until an SDK is configured.
        "opentelemetry-api>=1.25,<2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # Phase 1 of project_tests.sh: test files spread over workers (--dist loadfile).
            "pytest-xdist>=3.5",
            "requests>=2.31",
            "honcho>=2",
            "ruff>=0.6",
            # Types (pyproject.toml [tool.mypy]), with the stubs of the libraries that ship none.
            "mypy>=1.11",
            "types-jsonschema",
            "types-psycopg2",
            "schemathesis>=4",
            "openapi-spec-validator>=0.7",
            "hypothesis>=6.100",
            "pyyaml>=6",
            "playwright>=1.40",
            "axe-playwright-python>=0.1.4",
            # The tracing tests record spans with the SDK's InMemorySpanExporter.
            "opentelemetry-sdk>=1.25,<2",
        ],
        # Exporting traces: the SDK, configured from the OTEL_ variables, and the OTLP exporters.
        "otel": ["opentelemetry-sdk>=1.25,<2", "opentelemetry-exporter-otlp>=1.25,<2"],
        # The benchmark's peers (Celery's chain; DBOS, the durable one, issue 25) and its plots.
        "bench": ["celery>=5.3", "matplotlib>=3.7", "dbos>=3.4"],
    },
    entry_points={"console_scripts": ["flow = flow.cli:main"]},
)
