"""Checkout.com's error answers mapped into the standard vocabulary (STYLE rule 3).

Sources: ``paths-payments-id-refunds.yaml`` (shared/specs/checkout): 401 Unauthorized, 403 "Refund not
allowed", 404 "Payment not found", 422 "Invalid data was sent" with a ValidationError body
``{request_id, error_type, error_codes: [...]}``, 502 Bad gateway; checkout-sdk 4.8.1's
``CheckoutApiException`` reads the same three fields (``request_id``, ``error_type``, ``error_codes``).
The spec names no refund error codes beyond ValidationError's example (``payment_source_required``);
the codes below are the ones Checkout.com's API reference names for refunds (its error-code list) —
every one of them appears here and in tests/unit/gateways/test_checkout_errors.py. A 422 whose codes
are all unknown is decided by its ``error_type``: ``processing_error`` is a decline,
``request_invalid`` a bad request. Idempotency: "only 2xx answers are cached", so a 5xx is an unknown
outcome (the refund may exist) and is settled by looking it up (refunds.lookup).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from refundwatch.gateways.base import ErrorCode


@dataclass(frozen=True, slots=True)
class CheckoutErrorBody:
    request_id: str | None = None
    error_type: str | None = None
    error_codes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What the processor called it, for the timeline: ``request_invalid/amount_invalid``."""
        first = self.error_codes[0] if self.error_codes else None
        return "/".join(filter(None, (self.error_type, first))) or "http"


def parse_error(data: Mapping[str, Any]) -> CheckoutErrorBody:
    codes = data.get("error_codes")
    items = tuple(c for c in codes if isinstance(c, str) and c) if isinstance(codes, list) else ()
    request_id, error_type = data.get("request_id"), data.get("error_type")
    return CheckoutErrorBody(
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        error_type=error_type if isinstance(error_type, str) and error_type else None,
        error_codes=items,
    )


# 422 error_codes on a refund, with what each means for refundwatch.
REFUND_422_CODES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        # The amount is above what is left to refund on the payment.
        "refund_amount_exceeds_balance": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
        "amount_exceeds_balance": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
        # The acquirer or issuer refused the refund (error_type processing_error).
        "refund_authorization_declined": ErrorCode.DECLINED,
        "amount_invalid": ErrorCode.INVALID_REQUEST,
        "reference_invalid": ErrorCode.INVALID_REQUEST,  # e.g. over 50 characters
        "metadata_invalid": ErrorCode.INVALID_REQUEST,
        "payment_id_invalid": ErrorCode.INVALID_REQUEST,
        "payment_source_required": ErrorCode.INVALID_REQUEST,  # the spec's ValidationError example
    }
)

# A 422 decided by error_type when none of its codes is known.
ERROR_TYPES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {"processing_error": ErrorCode.DECLINED, "request_invalid": ErrorCode.INVALID_REQUEST}
)

# Decided by the HTTP status. 403 "Refund not allowed": not captured, already fully refunded, or a
# payment method without refunds — a refusal of this refund, never retried. 409: a request with the same
# Cko-Idempotency-Key is still being processed — retried (refunds.execution looks up before any re-send
# for processors whose idempotency does not cover failures). 429 honours Retry-After.
HTTP_STATUS_ERRORS: Final[Mapping[int, ErrorCode]] = MappingProxyType(
    {
        400: ErrorCode.INVALID_REQUEST,
        401: ErrorCode.AUTH_FAILED,
        403: ErrorCode.DECLINED,
        404: ErrorCode.PAYMENT_NOT_FOUND,
        409: ErrorCode.IDEMPOTENCY_CONFLICT,
        415: ErrorCode.INVALID_REQUEST,
        422: ErrorCode.INVALID_REQUEST,  # a 422 without error_type or known codes
        429: ErrorCode.RATE_LIMITED,
    }
)


def map_error(status_code: int, error: CheckoutErrorBody) -> ErrorCode:
    """Checkout.com's HTTP status and error codes -> the standard vocabulary."""
    if status_code >= 500:
        return ErrorCode.GATEWAY_UNAVAILABLE  # may have executed: looked up, never failed
    if status_code == 422:
        for code in error.error_codes:
            if code in REFUND_422_CODES:
                return REFUND_422_CODES[code]
        if error.error_type is not None and error.error_type in ERROR_TYPES:
            return ERROR_TYPES[error.error_type]
    if status_code in HTTP_STATUS_ERRORS:
        return HTTP_STATUS_ERRORS[status_code]
    if 400 <= status_code < 500:
        return ErrorCode.INVALID_REQUEST
    return ErrorCode.PROCESSOR_ERROR  # 1xx/3xx: not an answer refundwatch asked for


def describe(status_code: int) -> str:
    return {
        401: "unauthorized: the secret key was refused",
        403: "refund not allowed for this payment",
        404: "payment not found",
        409: "a request with this idempotency key is still in progress",
        422: "invalid data",
        429: "too many requests",
    }.get(status_code, "error")
