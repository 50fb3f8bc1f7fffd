"""The error hierarchy every layer raises; the HTTP layer maps it to status + machine-readable code."""

from __future__ import annotations

from typing import Any


class RefundwatchError(Exception):
    """Base: carries a stable machine-readable code and a human message."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra or {}


class ValidationFailed(RefundwatchError):
    status_code = 422
    code = "validation_error"


class NotFound(RefundwatchError):
    status_code = 404
    code = "not_found"


class Conflict(RefundwatchError):
    status_code = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class AuthenticationFailed(RefundwatchError):
    status_code = 401
    code = "unauthenticated"


class PermissionDenied(RefundwatchError):
    status_code = 403
    code = "insufficient_scope"


class Unavailable(RefundwatchError):
    """Something the request depends on did not answer; the same request may succeed later."""

    status_code = 503
    code = "unavailable"


class RateLimited(RefundwatchError):
    """Too many calls now; ``retry_after`` seconds from now there is room."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, extra={"retry_after": seconds})
        self.headers = {"Retry-After": str(seconds)}


class BadInput(RefundwatchError):
    """Bad CLI input or file: one line, non-zero exit."""

    code = "bad_input"
