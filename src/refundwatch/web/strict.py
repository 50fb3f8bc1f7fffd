"""Strict amounts and times. Litestar converts request bodies in msgspec's lax mode, where ``"2500"``,
``"25.00"`` and ``25.0`` all become integers and a number (or a numeric string) becomes a datetime in
Unix seconds. A money amount is only ever a JSON integer and a time only an RFC 3339 text, so routes
that take one check the raw JSON before the conversion (the body is decoded once; Litestar reuses it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import SerializationException
from litestar.handlers import BaseRouteHandler

from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.refunds.schemas import amount_type_problem


async def _json_object(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any] | None:
    """The request's JSON body when it is an object; None otherwise (not a request, not JSON, not an
    object): the body's own decoding answers those (422 validation_error)."""
    if not isinstance(connection, Request):
        return None
    try:
        body = await connection.json()
    except SerializationException:
        return None
    return body if isinstance(body, dict) else None


async def require_integer_amount(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: 422 ``invalid_amount`` unless the body's ``amount`` (when there is one) is a JSON integer.
    A missing amount and a body that is not an object are left to the schema (``validation_error``)."""
    body = await _json_object(connection)
    if body is not None and "amount" in body and (problem := amount_type_problem(body["amount"])):
        raise ValidationFailed(problem, code="invalid_amount")


async def require_rfc3339_captured_at(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: 422 ``validation_error`` unless the body's ``captured_at`` (when there is one) is an RFC 3339
    text: lax decoding took 20261101 or "0" as Unix seconds (1970). A missing or null one is left to
    the schema."""
    body = await _json_object(connection)
    if body is None or body.get("captured_at") is None:
        return
    try:
        msgspec.convert(body["captured_at"], dt.datetime)  # strict: text only, never a number
    except msgspec.ValidationError:
        raise ValidationFailed(
            "captured_at must be an RFC 3339 time such as 2026-11-01T10:00:00Z", code="validation_error"
        ) from None
