"""Strict amounts. Litestar converts request bodies in msgspec's lax mode, where ``"2500"``, ``"25.00"``
and ``25.0`` all become integers. A money amount is only ever a JSON integer, so routes that take one
check the raw JSON before the conversion (the body is decoded once; Litestar reuses it)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import SerializationException
from litestar.handlers import BaseRouteHandler

from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.refunds.schemas import amount_type_problem


async def require_integer_amount(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: 422 ``invalid_amount`` unless the body's ``amount`` (when there is one) is a JSON integer.
    A missing amount and a body that is not an object are left to the schema (``validation_error``)."""
    if not isinstance(connection, Request):
        return
    try:
        body = await connection.json()
    except SerializationException:
        return  # not JSON: the body's own decoding answers that (422 validation_error)
    if isinstance(body, dict) and "amount" in body and (problem := amount_type_problem(body["amount"])):
        raise ValidationFailed(problem, code="invalid_amount")
