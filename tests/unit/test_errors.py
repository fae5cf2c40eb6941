"""Retryable or not: one answer per error type, in flow/errors.py."""

from __future__ import annotations

import json

import peewee
import psycopg2
import pytest

from flow import errors
from flow.errors import FlowError, is_retryable

NOT_RETRYABLE = [
    errors.ConfigurationError("FLOW_X"),
    errors.DefinitionError("w.json", [("$", "bad")]),
    errors.DefinitionNotFound("W", []),
    errors.InvalidInput("$.name", "bad"),
    errors.InvalidJson("$", "bad"),
    errors.UnknownActivity("Nope"),
    errors.WorkflowNotFound("wf"),
    # Raised by the data itself: the same message fails the same way every time.
    peewee.DataError("invalid input syntax"),
    peewee.IntegrityError("duplicate key"),
    peewee.ProgrammingError("syntax error"),
    psycopg2.DataError("invalid input"),
    ValueError("A string literal cannot contain NUL (0x00) characters."),
    RecursionError("maximum recursion depth exceeded"),
    OverflowError("date value out of range"),
    TypeError("unhashable type: 'list'"),
    KeyError("name"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    json.JSONDecodeError("Expecting value", "", 0),
]

RETRYABLE = [
    errors.StoreUnavailable("database unavailable"),
    errors.ConcurrentUpdate("wf changed"),
    errors.WorkflowActorCrashed("SystemExit"),
    peewee.OperationalError("server closed the connection unexpectedly"),
    peewee.InterfaceError("connection already closed"),
    psycopg2.OperationalError("could not connect"),
    ConnectionResetError(),
    TimeoutError(),
    RuntimeError("something nobody foresaw"),  # unknown: assumed transient, retries are bounded
]


@pytest.mark.parametrize("error", NOT_RETRYABLE, ids=lambda e: type(e).__name__)
def test_errors_caused_by_the_input_are_not_retryable(error):
    assert is_retryable(error) is False


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_errors_that_may_pass_are_retryable(error):
    assert is_retryable(error) is True


def test_every_flow_error_says_whether_it_is_retryable_and_when_it_is_raised():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, FlowError)]
    assert len(classes) >= 10
    for cls in classes:
        assert isinstance(cls.retryable, bool), cls
        assert cls.__doc__ and ("Raised" in cls.__doc__ or cls is FlowError), cls


def test_invalid_json_is_refused_wherever_invalid_input_is():
    assert issubclass(errors.InvalidJson, errors.InvalidInput)
    error = errors.InvalidJson("$.input_data.a", "contains NUL")
    assert (error.path, error.message, str(error)) == ("$.input_data.a", "contains NUL", "$.input_data.a: contains NUL")


@pytest.mark.parametrize(
    ("known", "hint", "message"),
    [
        (["B", "A"], None, "no workflow definition named 'X' (known: A, B)"),
        ([f"W{i:02}" for i in range(10)], None, "(known: W00, W01, W02, W03, W04, W05, W06, W07, W08, W09)"),
        (
            [f"W{i:02}" for i in range(25, 0, -1)],
            None,
            "(known: W01, W02, W03, W04, W05, W06, W07, W08, W09, W10 and 15 more (GET /definitions))",
        ),
        ([], None, "no workflow definition named 'X' (none are registered)"),
        ([], "the definitions directory w does not exist", "(none are registered; the definitions directory w does"),
    ],
)
def test_an_unknown_definition_lists_ten_known_names_at_most(known, hint, message):
    assert message in str(errors.DefinitionNotFound("X", known, hint=hint))
