"""Every error leaves as JSON with a machine-readable ``code``; nothing ever shows a stack trace.

A browser asking for HTML on a page path gets 403, 404 and 500 as pages instead (web.error_pages).
"""

from __future__ import annotations

import logging
from typing import Any

from asyncpg.exceptions import PostgresError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from refundwatch.lib.exceptions import RefundwatchError
from refundwatch.refunds.schemas import field_error
from refundwatch.web.error_pages import error_page, wants_page

log = logging.getLogger("refundwatch.web")


def _body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def refundwatch_error(request: Request[Any, Any, Any], exc: RefundwatchError) -> Response[Any]:
    if wants_page(request, exc.status_code):
        return error_page(request, exc.status_code, _sentence(exc.message))
    headers = getattr(exc, "headers", None)
    return Response(_body(exc.code, exc.message, **exc.extra), status_code=exc.status_code, headers=headers)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    details = exc.extra if isinstance(exc.extra, list) else None
    message = exc.detail or "the request body is not valid"
    code = "validation_error"
    for detail in details or []:
        # A bad amount or currency in the body has its own code, and a message that says why.
        if not isinstance(detail, dict) or detail.get("source") != "body":
            continue
        if detail.get("key") == "data" and detail.get("message") == "'data'":  # Litestar's KeyError text
            detail["message"] = "a JSON object is required as the request body"
            message = f"{message}: the request body is empty"
        if found := field_error(detail.get("key"), str(detail.get("message", "not valid"))):
            code, message = found
            break
    return Response(_body(code, message, errors=details or []), status_code=422)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if wants_page(request, exc.status_code):
        # Litestar's 404 detail is terse ("Not Found"): the page's own words say more. A 403 names why.
        return error_page(request, exc.status_code, _sentence(exc.detail) if exc.status_code == 403 else None)
    codes: dict[type[HTTPException], str] = {
        NotFoundException: "not_found",
        NotAuthorizedException: "unauthenticated",
    }
    code = codes.get(type(exc), "http_error" if exc.status_code < 500 else "internal_error")
    status = exc.status_code
    if status == 400:  # Litestar's 400s are undecodable bodies and bad parameters: malformed input
        code, status = "validation_error", 422
    elif status == 413:  # the route's request_max_body_size
        code = "request_too_large"
    elif status == 405:  # the Allow header (Litestar's) names the methods the path takes
        code = "method_not_allowed"
    headers = dict(exc.headers or {})
    return Response(_body(code, exc.detail), status_code=status, headers=headers)


def unstorable_input(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Safety net: a value the database cannot store (too long, not valid text) is bad input, not a 500."""
    log.warning(
        "unstorable input on %s %s: %s", request.method, request.scope.get("path"), exc.__class__.__name__
    )
    return Response(_body("validation_error", "a value is too long or is not valid text"), status_code=422)


def too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    return Response(_body("validation_error", "the request body is nested too deeply"), status_code=422)


def _down_state(error: object) -> bool:
    """A PostgreSQL error whose SQLSTATE says the server cannot serve now: class 08 connection
    exception, 53 insufficient resources (too many connections), 57P operator intervention."""
    state = str(getattr(error, "sqlstate", "") or "")
    return state[:2] in ("08", "53") or state.startswith("57P")


def _database_down(exc: DBAPIError) -> bool:
    """The database did not answer (connection lost, refused, shutting down, out of connections, or
    SQLite busy), as opposed to refusing a statement."""
    if exc.connection_invalidated or _down_state(exc.orig):
        return True
    return "database is locked" in str(exc.orig)


def database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """PostgreSQL refuses some text (NUL characters, invalid encodings): that is bad input, not a 500."""
    # SQLSTATE class 22 is "data exception": NUL in text, bad encoding, value too long, ...
    if isinstance(exc, DataError) or str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
        return unstorable_input(request, exc)
    if _database_down(exc):
        return database_unavailable(request, exc)
    return internal_error(request, exc)


REDIS_RETRY_SECONDS = 30
DATABASE_RETRY_SECONDS = 5


def _unavailable(request: Request[Any, Any, Any], what: str | None, seconds: int) -> Response[Any]:
    headers = {"Retry-After": str(seconds)}
    if wants_page(request, HTTP_503_SERVICE_UNAVAILABLE):
        page = error_page(request, HTTP_503_SERVICE_UNAVAILABLE)
        page.headers.update(headers)
        return page
    named = f" ({what})" if what else ""
    message = f"a service refundwatch needs{named} does not answer; try again shortly"
    return Response(_body("unavailable", message), status_code=HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


def redis_unavailable(request: Request[Any, Any, Any], exc: RedisError) -> Response[Any]:
    """Redis does not answer (restarting, unreachable): 503 and a time to come back, not a 500 with
    its traceback. /readyz says the same; what needs no Redis (the API's refunds) goes on working."""
    log.warning(
        "Redis did not answer on %s %s: %s", request.method, request.scope.get("path"), exc.__class__.__name__
    )
    return _unavailable(request, "Redis", REDIS_RETRY_SECONDS)


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database does not answer (refused, restarting, failing over, no connection free in time):
    503 and a time to come back, as /readyz says, not a 500 that reads as a bug. A request retried
    with the same Idempotency-Key creates its refund once, whatever this one got to write."""
    log.warning(
        "the database did not answer on %s %s: %s",
        request.method,
        request.scope.get("path"),
        exc.__class__.__name__,
    )
    return _unavailable(request, "the database", DATABASE_RETRY_SECONDS)


def postgres_error(request: Request[Any, Any, Any], exc: PostgresError) -> Response[Any]:
    """An error asyncpg raises itself, unwrapped by SQLAlchemy: the server's refusal while connecting
    ("sorry, too many clients already", "the database system is starting up") is a database that
    does not answer now, not a bug."""
    return database_unavailable(request, exc) if _down_state(exc) else internal_error(request, exc)


def connection_unavailable(request: Request[Any, Any, Any], exc: OSError) -> Response[Any]:
    """A connection refused or timed out below the database layer (asyncpg raises these itself while
    connecting): a service that does not answer, not a bug."""
    log.warning(
        "a connection failed on %s %s: %s", request.method, request.scope.get("path"), exc.__class__.__name__
    )
    return _unavailable(request, None, DATABASE_RETRY_SECONDS)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.scope.get("path"),
        exc.__class__.__name__,
        exc_info=exc,
    )
    if wants_page(request, HTTP_500_INTERNAL_SERVER_ERROR):
        return error_page(request, HTTP_500_INTERNAL_SERVER_ERROR)
    return Response(
        _body("internal_error", "something went wrong; it has been logged"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RefundwatchError: refundwatch_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    RecursionError: too_deep,
    RedisError: redis_unavailable,
    # asyncpg raises these itself while connecting (refused, unreachable, timed out); the pool's own
    # timeout is SQLAlchemy's when no connection came free in time.
    ConnectionError: connection_unavailable,
    TimeoutError: connection_unavailable,
    PoolTimeout: database_unavailable,
    PostgresError: postgres_error,
    UnicodeEncodeError: unstorable_input,
    Exception: internal_error,
}
