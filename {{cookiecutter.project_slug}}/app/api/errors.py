"""Error responses: their documented shape, and a database outage answered with a fast 503."""

import json
import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db.errors import DatabaseUnavailableError, is_outage
from app.schemas.errors import ErrorMessage

logger = logging.getLogger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorMessage, "description": "Not found"},
}
DATABASE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorMessage,
        "description": "The database is down or did not answer in time; retry later",
    },
}


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped.

    A 422 echoes the invalid input, which may hold a lone surrogate ("\\ud800"): escaped, it is
    valid JSON; as UTF-8, it cannot be encoded at all (and would turn the 422 into a 500).
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


async def _request_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    return _AsciiJSONResponse({"detail": jsonable_encoder(error.errors())}, status_code=422)


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    logger.warning("database unavailable for %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(
        {"detail": "Database unavailable, retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, DBAPIError) and is_outage(error):
        return await _database_unavailable(request, error)
    raise error  # a bug, not an outage: the server's usual 500


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(RequestValidationError)(_request_validation_error)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
