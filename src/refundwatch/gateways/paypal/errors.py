"""PayPal's error answers mapped into the standard vocabulary (STYLE rule 3).

Sources: ``payments_payment_v2.json`` (shared/specs/paypal), the refund endpoint's answers: 400
``captures.refund-400``, 401 ``error_401`` + ``401``, 403 ``403``, 404 ``404``, 409 ``error_409`` +
``409``, 422 ``error_422`` + ``captures.refund-422`` (every issue listed below, in the spec's order),
500 ``error_500``, 503 ``error_503``. OAuth answers (``{"error": "invalid_token", ...}`` on an API call,
``invalid_client`` on the token call) are PayPal's OAuth 2.0 errors.

An error body is ``{name, message, debug_id, details: [{issue, description, field?, value?}], links}``;
the first detail whose ``issue`` is in the tables decides, then the HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from refundwatch.gateways.base import ErrorCode


@dataclass(frozen=True, slots=True)
class PayPalErrorBody:
    name: str | None = None
    message: str | None = None
    debug_id: str | None = None
    issues: tuple[str, ...] = ()
    description: str | None = None  # the first detail's description
    oauth_error: str | None = None  # {"error": ...} of an OAuth answer
    oauth_description: str | None = None

    @property
    def label(self) -> str:
        """What the processor called it, for the timeline: ``UNPROCESSABLE_ENTITY/REFUND_AMOUNT_EXCEEDED``."""
        return "/".join(filter(None, (self.name, self.issues[0] if self.issues else None))) or (
            self.oauth_error or "http"
        )

    @property
    def detail(self) -> str | None:
        return self.description or self.message or self.oauth_description


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_error(data: Mapping[str, Any]) -> PayPalErrorBody:
    details = data.get("details")
    items = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    issues = tuple(issue for d in items if (issue := _text(d, "issue")) is not None)
    return PayPalErrorBody(
        name=_text(data, "name"),
        message=_text(data, "message"),
        debug_id=_text(data, "debug_id"),
        issues=issues,
        description=next((text for d in items if (text := _text(d, "description"))), None),
        oauth_error=_text(data, "error"),
        oauth_description=_text(data, "error_description"),
    )


# Every issue of captures.refund-422, in the spec's order, with why it maps as it does.
REFUND_422_ISSUES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "CANNOT_BE_ZERO_OR_NEGATIVE": ErrorCode.INVALID_REQUEST,
        "DECIMAL_PRECISION": ErrorCode.INVALID_REQUEST,  # refused at intake; kept for safety
        "DECIMALS_NOT_SUPPORTED": ErrorCode.INVALID_REQUEST,
        "INVALID_CURRENCY_CODE": ErrorCode.INVALID_REQUEST,
        "CURRENCY_MISMATCH": ErrorCode.CURRENCY_MISMATCH,
        "CANNOT_BE_NEGATIVE": ErrorCode.INVALID_REQUEST,
        "CAPTURE_FULLY_REFUNDED": ErrorCode.ALREADY_REFUNDED,
        "REFUND_CAPTURE_CURRENCY_MISMATCH": ErrorCode.CURRENCY_MISMATCH,
        "REFUND_NOT_ALLOWED": ErrorCode.DECLINED,
        "REFUND_TIME_LIMIT_EXCEEDED": ErrorCode.DECLINED,
        "REFUND_AMOUNT_EXCEEDED": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
        "REFUND_AMOUNT_TOO_LOW": ErrorCode.INVALID_REQUEST,
        "REFUND_FAILED_INSUFFICIENT_FUNDS": ErrorCode.DECLINED,
        "PARTIAL_REFUND_NOT_ALLOWED": ErrorCode.INVALID_REQUEST,
        "MAX_NUMBER_OF_REFUNDS_EXCEEDED": ErrorCode.DECLINED,
        "PENDING_CAPTURE": ErrorCode.DECLINED,
        # "Invoice ID was previously used to refund a capture": invoice_id is this attempt's key, so a
        # refund under it exists already (a re-send past the PayPal-Request-Id's 45 days). Never failed,
        # never success: the outcome is unknown and a person settles it.
        "DUPLICATE_INVOICE_ID": ErrorCode.OUTCOME_UNKNOWN,
        "PAYEE_ACCOUNT_LOCKED_OR_CLOSED": ErrorCode.DECLINED,
        "PAYER_ACCOUNT_LOCKED_OR_CLOSED": ErrorCode.DECLINED,
        "PAYEE_ACCOUNT_RESTRICTED": ErrorCode.DECLINED,
        "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK": ErrorCode.DECLINED,
        "TRANSACTION_DISPUTED": ErrorCode.DECLINED,
        "PLATFORM_FEE_EXCEEDED": ErrorCode.INVALID_REQUEST,  # refundwatch sends no platform fees
        "REFUND_IS_RESTRICTED": ErrorCode.DECLINED,  # only the API caller that captured may refund
        "PLATFORM_FEE_NOT_ENABLED": ErrorCode.INVALID_REQUEST,
    }
)

# The other answers' issues (400 captures.refund-400, 401, 403, 404, 409 of the same spec), and one
# from PayPal's Orders v2 API that says a PayPal-Request-Id was already used: the key went out before,
# so the refund may exist.
OTHER_ISSUES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "MISSING_REQUIRED_PARAMETER": ErrorCode.INVALID_REQUEST,
        "INVALID_PARAMETER_SYNTAX": ErrorCode.INVALID_REQUEST,
        "INVALID_STRING_LENGTH": ErrorCode.INVALID_REQUEST,
        "INVALID_ACCOUNT_STATUS": ErrorCode.AUTH_FAILED,
        "PERMISSION_DENIED": ErrorCode.AUTH_FAILED,
        "INVALID_RESOURCE_ID": ErrorCode.PAYMENT_NOT_FOUND,
        "PREVIOUS_REQUEST_IN_PROGRESS": ErrorCode.IDEMPOTENCY_CONFLICT,
        "PAYPAL_REQUEST_ID_PREVIOUSLY_USED": ErrorCode.OUTCOME_UNKNOWN,
    }
)

ISSUES: Final[Mapping[str, ErrorCode]] = MappingProxyType({**REFUND_422_ISSUES, **OTHER_ISSUES})

# Decided by the HTTP status when no known issue decides. 409 RESOURCE_CONFLICT ("a previous call for the
# given resource is in progress") is retried with the same key, never failed. A 5xx after the request
# went out leaves the outcome unknown (gateway_unavailable).
HTTP_STATUS_ERRORS: Final[Mapping[int, ErrorCode]] = MappingProxyType(
    {
        400: ErrorCode.INVALID_REQUEST,
        401: ErrorCode.AUTH_FAILED,
        403: ErrorCode.AUTH_FAILED,
        404: ErrorCode.PAYMENT_NOT_FOUND,
        409: ErrorCode.IDEMPOTENCY_CONFLICT,
        415: ErrorCode.INVALID_REQUEST,
        422: ErrorCode.DECLINED,  # an undocumented business refusal: PayPal did not refund
        429: ErrorCode.RATE_LIMITED,
    }
)

# Statuses that always win over an issue: the request did not get through authentication, or the
# processor is in trouble (a 5xx never means "refused").
_STATUS_FIRST: Final = frozenset({401, 429})


def map_error(status_code: int, error: PayPalErrorBody, *, reading: bool = False) -> ErrorCode:
    """PayPal's HTTP status and issues -> the standard vocabulary. ``reading``: the request read a refund
    by id (GET), so a 404 is about that refund, not the capture."""
    if status_code >= 500:
        return ErrorCode.GATEWAY_UNAVAILABLE
    if status_code in _STATUS_FIRST:
        return HTTP_STATUS_ERRORS[status_code]
    if status_code == 409:
        return ErrorCode.IDEMPOTENCY_CONFLICT  # whatever the issue says: retried, never failed
    if status_code == 404 and reading:
        return ErrorCode.INVALID_REQUEST
    for issue in error.issues:
        if issue in ISSUES:
            return ISSUES[issue]
    if status_code in HTTP_STATUS_ERRORS:
        return HTTP_STATUS_ERRORS[status_code]
    if 400 <= status_code < 500:
        return ErrorCode.INVALID_REQUEST
    return ErrorCode.PROCESSOR_ERROR
