"""Each :class:`~flow.errors.FlowError` has its own HTTP answer (``api/errors.py``);
Falcon picks the handler of the most specific class, and anything else of Libero
Flow's is a 500 that names no internals beyond the error's own message."""

from __future__ import annotations

import falcon
import falcon.testing
import pytest

from api.errors import HANDLERS, add_error_handlers
from flow import errors
from flow.errors import FlowError

CASES = [
    (errors.WorkflowNotFound("w-1"), 404, {"title": "Workflow not found", "description": "no workflow with id 'w-1'"}),
    (errors.IdempotencyConflict("key k names another start"), 409, {"title": "Idempotency key reused"}),
    (
        errors.DefinitionNotFound("Nope", ["A"]),
        422,
        {
            "title": "Invalid request",
            "errors": [{"path": "$.name", "message": "no workflow definition named 'Nope' (known: A)"}],
        },
    ),
    (
        errors.InvalidJson("$.a", "contains NUL"),
        400,
        {"title": "Invalid JSON", "errors": [{"path": "$.a", "message": "contains NUL"}]},
    ),
    (
        errors.InvalidInput("$.b", "must be 1"),
        422,
        {"title": "Invalid request", "errors": [{"path": "$.b", "message": "must be 1"}]},
    ),
    (
        errors.DefinitionError("W", [("$", "bad"), ("$.name", "worse")]),
        422,
        {
            "title": "Invalid workflow definition",
            "errors": [{"path": "$", "message": "bad"}, {"path": "$.name", "message": "worse"}],
        },
    ),
    (
        errors.WorkflowEnded("w-1", "workflow w-1 is Finished; only a running workflow can be cancelled"),
        409,
        {
            "title": "Workflow already ended",
            "description": "workflow w-1 is Finished; only a running workflow can be cancelled",
        },
    ),
    (errors.PauseRefused("w-1", "workflow w-1 is paused already"), 409, {"title": "Workflow cannot be paused"}),
    (errors.ResumeRefused("w-1", "workflow w-1 is not paused"), 409, {"title": "Workflow cannot be resumed"}),
    (errors.RetryRefused("w-1", "workflow w-1 is Finished"), 409, {"title": "Workflow cannot be retried"}),
    (errors.StoreUnavailable("down"), 503, {"title": "Database unavailable"}),
    (
        errors.FilterTooCostly("input", "nests objects and arrays deeper than 8 levels"),
        422,
        {"errors": [{"path": "input", "message": "nests objects and arrays deeper than 8 levels"}]},
    ),
    (
        errors.FilterTooCostly("query", "the query ran past its budget of 5 s", retry_after_s=5),
        503,
        {"title": "Query over budget", "description": "query: the query ran past its budget of 5 s"},
    ),
    (
        errors.StartBacklogFull("10000 workflows wait for an engine", retry_after_s=5),
        503,
        {"title": "Start backlog full", "description": "10000 workflows wait for an engine"},
    ),
    (
        errors.TooManyStarts("this API process is working on 12 starts already", retry_after_s=1),
        429,
        {"title": "Too many starts at once", "description": "this API process is working on 12 starts already"},
    ),
    (errors.ConcurrentUpdate("raced"), 500, {"title": "Internal error", "description": "raced"}),
]


@pytest.mark.parametrize(("error", "status", "body"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_error_has_its_answer(error, status, body):
    class Failing:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise error

    app = falcon.App()
    add_error_handlers(app)
    app.add_route("/", Failing())
    result = falcon.testing.TestClient(app).simulate_get("/")
    assert result.status_code == status
    assert body.items() <= result.json.items()
    if status == 503:
        assert result.headers["retry-after"] == "5"
    if status == 429:
        assert result.headers["retry-after"] == "1"


def test_the_handlers_are_listed_most_specific_first_with_the_fallback_last():
    # Falcon resolves by the exception's MRO whatever the order; the order is for the
    # reader, who sees each special case before the class it refines.
    order = list(HANDLERS)
    for index, cls in enumerate(order):
        assert not any(issubclass(later, cls) for later in order[index + 1 :]), cls
    assert order[-1] is FlowError
