"""The Falcon application: ``gunicorn 'api.app:create_app()'``."""

from __future__ import annotations

from pathlib import Path

import falcon
import falcon.inspect
import falcon.routing

from api.auth import AccessMiddleware, Credentials, check_routes
from api.errors import add_error_handlers
from api.openapi import document
from api.resources.batches import BatchCancelResource, BatchesResource, BatchResource
from api.resources.definitions import (
    DefinitionResource,
    DefinitionsResource,
    DefinitionValidationResource,
    DefinitionVersionResource,
)
from api.resources.events import EventResource, EventsResource
from api.resources.health import HealthResource
from api.resources.limits import LimitResource, LimitsResource
from api.resources.meta import FaviconSink, MetricsResource, OpenApiResource, RootResource
from api.resources.pools import PoolsResource
from api.resources.replay import DefinitionReplayResource
from api.resources.rerun import WorkflowRerunResource
from api.resources.schedules import (
    SchedulePauseResource,
    ScheduleResource,
    ScheduleResumeResource,
    SchedulesResource,
    ScheduleTriggerResource,
)
from api.resources.signals import CallbackResource, SignalResource
from api.resources.workflows import (
    WorkflowActivitiesResource,
    WorkflowCancelResource,
    WorkflowEventsResource,
    WorkflowPauseResource,
    WorkflowResource,
    WorkflowResumeResource,
    WorkflowRetryResource,
    WorkflowsResource,
)
from api.security import SecurityHeadersMiddleware
from api.serving import RequestReadTimeout, handle_read_timeout
from flow.process.logs import configure_logging
from flow.process.queue_depths import QueueDepths
from flow.process.runtime import Runtime
from flow.settings import Settings

#: The web page: static files shipped in the package (no build step, no CDN).
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> falcon.App:
    """Build the API for ``settings`` (default: from the environment) or an existing runtime."""
    if runtime is None:
        settings = settings or Settings.from_env()
        configure_logging(settings)
        runtime = Runtime.build(settings)
    # Headers first: Falcon runs every process_response, even for a request that the
    # token check refused.
    credentials = Credentials.load(runtime.settings.api_token, runtime.settings.tokens_file)
    middleware: list[SecurityHeadersMiddleware | AccessMiddleware] = [
        SecurityHeadersMiddleware(),
        AccessMiddleware(runtime, credentials),
    ]
    # Falcon's own router, kept: the OpenAPI document is derived from its routes.
    router = falcon.routing.CompiledRouter()
    app = falcon.App(middleware=middleware, router=router)
    app.req_options.strip_url_path_trailing_slash = True
    add_error_handlers(app)
    depths = QueueDepths(runtime.settings, runtime.broker)  # one cache for the pools' backlogs
    app.add_error_handler(RequestReadTimeout, handle_read_timeout)
    app.add_route("/", RootResource())
    app.add_static_route("/ui", str(STATIC_DIR), fallback_filename="index.html")
    app.add_sink(FaviconSink(STATIC_DIR / "favicon.ico"), prefix=r"/favicon\.ico$")
    app.add_route("/health", HealthResource(runtime))
    app.add_route("/metrics", MetricsResource(runtime))
    openapi_resource = OpenApiResource()
    app.add_route("/openapi.json", openapi_resource)
    app.add_route("/definitions", DefinitionsResource(runtime))
    app.add_route("/definitions/validate", DefinitionValidationResource(runtime))
    app.add_route("/definitions/{name}", DefinitionResource(runtime))
    app.add_route("/definitions/{name}/replay", DefinitionReplayResource(runtime))
    app.add_route(
        "/definitions/{name}/versions/{version:int(min=1, max=2147483647)}", DefinitionVersionResource(runtime)
    )
    app.add_route("/workflows", WorkflowsResource(runtime))
    app.add_route("/workflows/{workflow_id}", WorkflowResource(runtime, depths=depths))
    app.add_route("/workflows/{workflow_id}/activities", WorkflowActivitiesResource(runtime, depths=depths))
    app.add_route("/workflows/{workflow_id}/events", WorkflowEventsResource(runtime))
    app.add_route("/workflows/{workflow_id}/cancel", WorkflowCancelResource(runtime))
    app.add_route("/workflows/{workflow_id}/retry", WorkflowRetryResource(runtime))
    app.add_route("/workflows/{workflow_id}/rerun", WorkflowRerunResource(runtime))
    app.add_route("/workflows/{workflow_id}/signals/{name}", SignalResource(runtime))
    app.add_route("/signals/{token}", CallbackResource(runtime))
    app.add_route("/workflows/{workflow_id}/pause", WorkflowPauseResource(runtime))
    app.add_route("/workflows/{workflow_id}/resume", WorkflowResumeResource(runtime))
    app.add_route("/limits", LimitsResource(runtime))
    app.add_route("/limits/{name}", LimitResource(runtime))
    app.add_route("/pools", PoolsResource(runtime, depths))
    app.add_route("/schedules", SchedulesResource(runtime))
    app.add_route("/schedules/{name}", ScheduleResource(runtime))
    app.add_route("/schedules/{name}/pause", SchedulePauseResource(runtime))
    app.add_route("/schedules/{name}/resume", ScheduleResumeResource(runtime))
    app.add_route("/schedules/{name}/trigger", ScheduleTriggerResource(runtime))
    app.add_route("/batches", BatchesResource(runtime))
    app.add_route("/batches/{batch_id}", BatchResource(runtime))
    app.add_route("/batches/{batch_id}/cancel", BatchCancelResource(runtime))
    app.add_route("/events", EventsResource(runtime))
    app.add_route("/events/{event_id}", EventResource(runtime))
    check_routes([route.path for route in falcon.inspect.inspect_compiled_router(router)])
    openapi_resource.document = document(router, auth=credentials.required)
    return app
