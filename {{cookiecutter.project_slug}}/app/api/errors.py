"""Error responses: their documented shape; outages and overload answered with a fast 503."""

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import ClientDisconnect

from app.api.conflicts import CONFLICT_DETAILS
from app.core.concurrency import JobFailedError, OverloadedError
from app.core.db.errors import (
    ConstraintViolation,
    DatabaseUnavailableError,
    constraint_violation,
    is_outage,
)
from app.core.db.server import UnsupportedDatabaseError
from app.core.logging import escaped
from app.schemas.errors import ErrorMessage

logger = logging.getLogger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorMessage, "description": "Not found"},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorMessage,
        "description": "The database is down, or the service is overloaded; retry later "
        "(see `Retry-After`)",
    },
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {
        "model": ErrorMessage,
        "description": "The body could not be read as JSON text (e.g. it is not UTF-8)",
    },
    status.HTTP_408_REQUEST_TIMEOUT: {
        "model": ErrorMessage,
        "description": "The body did not arrive within the configured time",
    },
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "model": ErrorMessage,
        "description": "The body is larger than the configured limit",
    },
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {
        "model": ErrorMessage,
        "description": "Conflicts with what is stored: a duplicate, or a reference to "
        "something that no longer exists",
    },
}
# What a 409 says of a constraint app/api/conflicts.py does not name: by what broke which kind.
DEFAULT_CONFLICT_DETAILS = {
    ("unique", "insert"): "Conflicts with something already stored",
    ("unique", "update"): "Conflicts with something already stored",
    ("foreign key", "insert"): "Refers to something that does not exist",
    (
        "foreign key",
        "update",
    ): "Refers to something that does not exist, or changes what is referred to",
    ("foreign key", "delete"): "Is still referred to: remove or change what refers to it first",
}
# The longest input a 422 answer echoes back; longer input is left out of the answer.
ECHO_LIMIT = 100
# The most errors a 422 answer lists; it says how many more there were.
MAX_ERRORS = 20


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped.

    A 422 echoes the invalid input, which may hold a lone surrogate ("\\ud800"): escaped, it is
    valid JSON; as UTF-8, it cannot be encoded at all (and would turn the 422 into a 500).
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def _field_path(location: Any) -> list[str | int]:
    """The path to the field, without pydantic's internal steps (union members, validators)."""
    return [
        step
        for step in location
        if isinstance(step, int) or (isinstance(step, str) and step.isidentifier())
    ]


def _client_error(error: dict[str, Any]) -> dict[str, Any]:
    """The field, the rule and a short message; the input only when it is short. Nothing of
    the validators' internals (`ctx` and `loc` can hold their reprs and addresses)."""
    answer: dict[str, Any] = {
        "type": error["type"],
        "loc": _field_path(error["loc"]),
        "msg": error["msg"],
    }
    if _echoable(value := error.get("input")):
        answer["input"] = value
    return answer


def _echoable(value: Any) -> bool:
    """A short string, or a number JSON can hold: not NaN or infinity, which a body may carry
    (Python's JSON reader takes them) but an answer cannot."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) or (isinstance(value, str) and len(value) <= ECHO_LIMIT)


async def _request_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    # "Input should be None" comes from the `| None` of an optional field whose value is
    # wrong: the other error of that field says what is.
    found = [each for each in error.errors() if each["type"] != "none_required"]
    errors = [_client_error(each) for each in found[:MAX_ERRORS]]
    if len(found) > MAX_ERRORS:  # thousands of unknown keys: a few kilobytes, not megabytes
        left_out = len(found) - MAX_ERRORS
        errors.append({"type": "too_many_errors", "loc": [], "msg": f"{left_out} more errors"})
    return _AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _unavailable(detail: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers
    )


def _request_line(request: Request) -> str:
    return f"{request.method} {escaped(request.url.path)}"


def _cause(error: Exception) -> str:
    """The error's class and SQLSTATE: never its SQL text or bound parameters (user data)."""
    if isinstance(error, DBAPIError):
        code = getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlite_errorname", None)
        name = type(error.orig).__name__
        return f"{name} (SQLSTATE {code})" if code else name
    return f"{type(error).__name__}: {escaped(str(error))}"


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    logger.warning("database unavailable for %s: %s", _request_line(request), _cause(error))
    return _unavailable("Database unavailable, retry later", retry_after=5)


async def _unsupported_database(request: Request, error: Exception) -> JSONResponse:
    # Found on a new connection after start-up: the operator must act, the client can only wait.
    logger.error("%s refused for %s: %s", type(error).__name__, _request_line(request), error)
    return _unavailable("Database unavailable, retry later", retry_after=5)


async def _overloaded(request: Request, error: Exception) -> JSONResponse:
    logger.warning("overloaded, refused %s: %s", _request_line(request), _cause(error))
    return _unavailable("Service overloaded, retry shortly", retry_after=1)


async def _job_failed(request: Request, error: Exception) -> JSONResponse:
    logger.warning("CPU job failed for %s: %s", _request_line(request), _cause(error))
    return _unavailable(f"The work was stopped: {error}")


async def _client_disconnected(request: Request, error: Exception) -> Response:
    # Nobody reads this answer; 499 ("client closed request") tells the access log why.
    return Response(status_code=499)


async def _conflict(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IntegrityError)
    violation = constraint_violation(error)
    if violation is None:
        raise error  # NOT NULL or CHECK: the code let bad data through, a bug (500)
    return JSONResponse(
        {"detail": conflict_detail(violation)}, status_code=status.HTTP_409_CONFLICT
    )


def conflict_detail(violation: ConstraintViolation) -> str:
    """What a 409 says: the same on PostgreSQL and SQLite."""
    default = DEFAULT_CONFLICT_DETAILS.get(
        (violation.kind, violation.operation), "Conflicts with what is stored"
    )
    return CONFLICT_DETAILS.get(violation.constraint or "", default)


async def _lazy_load(request: Request, error: Exception) -> Response:
    if "lazy='raise'" in str(error):
        error.add_note(
            "Load the relationship in the query that needs it, e.g. "
            "`select(Item).options(selectinload(Item.tags))` (README: Relationships)."
        )
    raise error


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, DBAPIError) and is_outage(error):
        return await _database_unavailable(request, error)
    raise error  # a bug, not an outage: the server's usual 500


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(RequestValidationError)(_request_validation_error)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.add_exception_handler(UnsupportedDatabaseError, _unsupported_database)
    # Every pooled connection stayed busy for the whole pool timeout: busy, not down.
    app.add_exception_handler(PoolTimeoutError, _overloaded)
    app.add_exception_handler(OverloadedError, _overloaded)
    app.add_exception_handler(JobFailedError, _job_failed)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(IntegrityError, _conflict)
    # A relationship read that was not loaded: still a 500, with a note that says what to do.
    app.add_exception_handler(InvalidRequestError, _lazy_load)
