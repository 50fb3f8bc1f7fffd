"""Adyen's error answers and refund failure reasons, mapped into the standard vocabulary (STYLE rule 3).

Where each code and text comes from (checked 2026-12; the short names are used in the tables below):

- spec: CheckoutService-v72.json (shared/specs/adyen), the refund endpoint's error examples:
  generic-400 ``702`` "Unexpected input: ...", generic-401 ``000`` "HTTP Status Response - Unauthorized"
  (security), generic-403 ``901`` "Invalid Merchant Account" (security), generic-422 ``14_030``
  "Return URL is missing." (not refund-relevant), generic-500 ``905`` "Payment details are not
  supported" (configuration).
- webhooks-spec: Webhooks-v1.json examples: REFUND ``success=false`` with reason "Transaction hasn't been
  captured, refund not possible"; REFUND_FAILED with reason "Refund Failed".
- sdk: Adyen/adyen-python-api-library (the fetched snapshot; the installed 16.0.0 wheel has the same
  ``Client._raise_http_error``, which tells errors apart by HTTP status only and holds no code table).
  Its test mocks: ``authorise-error-010.json`` 403 ``010`` "Not allowed" (security),
  ``capture-error-167.json`` 422 ``167`` "Original pspReference required for this operation",
  ``checkout/paymentmethods-error-forbidden-403.json`` 403 ``901``.
- go-sdk: Adyen/adyen-go-api-library ``tests/checkout_test.go``, run against Adyen's test environment:
  422 ``138`` "Unsupported currency specified", 403 ``901`` "Invalid Merchant Account".
- ruby-168: adyen/adyen-ruby-api-library issue #168, a refund answered 422 ``100`` "Required object
  'amount' is not provided." (validation).
- docs-codes: docs.adyen.com/development-resources/error-codes. Its stored copy ends after the first
  codes: ``000`` (generic, many causes), ``010`` "Not allowed" (credential lacks a role), ``100``
  "Required object 'amount' is not provided". The rest of the list was read from
  wikimedia/wikimedia-fundraising-SmashPig ``PaymentProviders/Adyen/ExceptionMapper.php``, a list
  "gleaned from" that page (second hand): ``137`` "Field 'amount' is not valid.", ``138``, ``166``
  "Amount not allowed for this operation", ``167``, ``702`` "Problem parsing request", ``703``
  "Required resource temporarily unavailable", ``704`` "Request already processed", ``905``, ``906``
  "Invalid Request: Original pspReference is invalid for this environment", ``29_001`` "Field '{0}' may
  not exceed {1} characters.", ``29_100`` "The request is larger than the allowed maximum of {0} bytes".
- idempotency: docs.adyen.com/development-resources/api-idempotency. The stored copy ends before its
  error section; that section is quoted elsewhere as "If you submit a duplicate request before the
  first request has completed, the API returns an HTTP 422 - Unprocessable Entity or HTTP 409 -
  Conflict status with the error code 704", the header ``transient-error: true`` saying a retry with
  the same key will do. An answer seen in production (VTEX known issue 884154): 409 ``704`` "request
  already processed or in progress" (validation). Not confirmed from Adyen's own page.
- batch-refunds: docs.adyen.com/development-resources/batch-processing/.../refundwithdata-result-file,
  the refund error messages: "Transaction not found", "Transaction is expired", "Insufficient balance
  on payment", "Only possible to refund the full amount", "Modification in different currency than
  authorisation", "Internal error", "Operation not available", "Operation not allowed", "Operation
  failed". Adyen's .NET SDK test mocks carry "Insufficient balance on payment" as a REFUND
  ``success=false`` reason.

Not confirmed anywhere: which synchronous answer, if any, Checkout v72 gives to a refund above what is
left on the payment. Adyen documents that case as a REFUND notification with ``success=false`` and the
reason "Insufficient balance on payment" (batch-refunds), so refundwatch reads that reason, and any error
message that says the same, as ``amount_exceeds_refundable``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from refundwatch.gateways.base import ErrorCode


@dataclass(frozen=True, slots=True)
class AdyenErrorBody:
    """Adyen's ServiceError ``{status, errorCode, message, errorType, pspReference}``."""

    error_code: str | None = None
    message: str | None = None
    error_type: str | None = None
    psp_reference: str | None = None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_error(data: Mapping[str, Any]) -> AdyenErrorBody:
    code = data.get("errorCode")
    return AdyenErrorBody(
        error_code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
        message=_text(data, "message"),
        error_type=_text(data, "errorType"),
        psp_reference=_text(data, "pspReference"),
    )


# Decided by the HTTP status alone (the SDK raises a distinct exception for each: _raise_http_error).
HTTP_STATUS_ERRORS: Final[Mapping[int, ErrorCode]] = MappingProxyType(
    {
        401: ErrorCode.AUTH_FAILED,  # AdyenAPIAuthenticationError (spec generic-401)
        403: ErrorCode.AUTH_FAILED,  # AdyenAPIInvalidPermission (010, 901)
        404: ErrorCode.PAYMENT_NOT_FOUND,  # AdyenAPICommunicationError
        429: ErrorCode.RATE_LIMITED,
    }
)

# Adyen's errorCode, consulted after the HTTP status and the refund-failure wording. Every documented
# code a refund request can meet; "000" (generic, many causes) is deliberately absent.
ERROR_CODES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "010": ErrorCode.AUTH_FAILED,
        "100": ErrorCode.INVALID_REQUEST,
        "130": ErrorCode.INVALID_REQUEST,
        "137": ErrorCode.INVALID_REQUEST,
        "138": ErrorCode.INVALID_REQUEST,
        "166": ErrorCode.INVALID_REQUEST,
        "167": ErrorCode.PAYMENT_NOT_FOUND,
        "702": ErrorCode.INVALID_REQUEST,
        "703": ErrorCode.GATEWAY_UNAVAILABLE,
        "704": ErrorCode.IDEMPOTENCY_CONFLICT,
        "901": ErrorCode.AUTH_FAILED,
        "905": ErrorCode.PROCESSOR_ERROR,
        "906": ErrorCode.PAYMENT_NOT_FOUND,
        "29_001": ErrorCode.INVALID_REQUEST,
        "29_100": ErrorCode.INVALID_REQUEST,
    }
)

# Each code's text, where it was read, and why it maps as it does. A test keeps both tables in step.
ERROR_CODE_SOURCES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "010": "Not allowed; 403 security (sdk mock, docs-codes): the API credential lacks a role",
        "100": "Required object 'amount' is not provided. (docs-codes, ruby-168 on a refund)",
        "130": "Reference Missing (sdk mock checkout/payments-error-invalid-data-422, docs-codes)",
        "137": "Field 'amount' is not valid. (docs-codes via SmashPig; older copies of the list: "
        "Invalid amount specified)",
        "138": "Unsupported currency specified; 422 validation (go-sdk, docs-codes)",
        "166": "Amount not allowed for this operation (docs-codes): e.g. a partial refund not allowed",
        "167": "Original pspReference required for this operation; 422 validation (sdk mock, go-sdk): "
        "Adyen does not know the payment",
        "702": "Problem parsing request (docs-codes); spec generic-400 'Unexpected input: ...'",
        "703": "Required resource temporarily unavailable (docs-codes); 503 per the idempotency page "
        "(quoted second hand): nothing was processed, retry",
        "704": "Request already processed (docs-codes); observed 'request already processed or in "
        "progress' as 409, documented as 422 or 409 (idempotency, second hand): retry with the same key",
        "901": "Invalid Merchant Account; 403 security (spec generic-403, sdk mock, go-sdk)",
        "905": "Payment details are not supported; configuration (spec generic-500): Adyen's setup, "
        "not the request",
        "906": "Invalid Request: Original pspReference is invalid for this environment (docs-codes): "
        "a test payment refunded live or the other way round",
        "29_001": "Field '{0}' may not exceed {1} characters. (docs-codes)",
        "29_100": "The request is larger than the allowed maximum of {0} bytes (docs-codes)",
    }
)

# Adyen's errorType (the docs name four: internal, validation, security, configuration), consulted last
# before the HTTP status family.
ERROR_TYPES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "security": ErrorCode.AUTH_FAILED,
        "validation": ErrorCode.INVALID_REQUEST,
        "configuration": ErrorCode.PROCESSOR_ERROR,
        "internal": ErrorCode.PROCESSOR_ERROR,
    }
)

# The documented refund failure reasons that say more than "refused" (batch-refunds, webhooks-spec).
# Any other reason of a failed refund is ``declined``.
REFUND_REASONS: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "Insufficient balance on payment": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
        "Modification in different currency than authorisation": ErrorCode.CURRENCY_MISMATCH,
        "Transaction not found": ErrorCode.PAYMENT_NOT_FOUND,
        "Only possible to refund the full amount": ErrorCode.INVALID_REQUEST,
    }
)

# The same conditions in other words, for error messages (Adyen words them differently over time).
_EXCEEDS = re.compile(
    r"exceed|insufficient (?:in-process )?(?:funds|balance)"
    r"|(?:amount|value)\b.*\b(?:too (?:high|large)|greater than|more than)",
    re.I,
)
_CURRENCY = re.compile(r"currenc(?:y|ies)\b.*\b(?:mismatch|match|differ)|different currenc", re.I)
# "exceed" alone would also catch 29_001 "may not exceed {1} characters": a field too long, not money.
_FIELD_TOO_LONG = re.compile(r"may not exceed \S+ characters", re.I)


def reason_code(reason: str | None) -> ErrorCode:
    """A failed refund's reason (REFUND ``success=false``, REFUND_FAILED) -> the standard vocabulary."""
    text = (reason or "").strip()
    if text in REFUND_REASONS:
        return REFUND_REASONS[text]
    return _worded(text) or ErrorCode.DECLINED


def _worded(message: str) -> ErrorCode | None:
    if _EXCEEDS.search(message) and not _FIELD_TOO_LONG.search(message):
        return ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE
    if _CURRENCY.search(message):
        return ErrorCode.CURRENCY_MISMATCH
    return None


def map_error(status_code: int, error: AdyenErrorBody) -> ErrorCode:
    """Adyen's HTTP status, message, errorCode and errorType -> the standard vocabulary."""
    if status_code in HTTP_STATUS_ERRORS:
        return HTTP_STATUS_ERRORS[status_code]
    if status_code >= 500:
        return ErrorCode.GATEWAY_UNAVAILABLE  # the refund may have been taken: outcome unknown
    message = (error.message or "").strip()
    if message in REFUND_REASONS:
        return REFUND_REASONS[message]
    worded = _worded(message)
    if worded is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE:
        return worded
    if error.error_code is not None and error.error_code in ERROR_CODES:
        return ERROR_CODES[error.error_code]
    if worded is not None:
        return worded
    if error.error_type is not None and error.error_type in ERROR_TYPES:
        return ERROR_TYPES[error.error_type]
    if 400 <= status_code < 500:
        return ErrorCode.INVALID_REQUEST
    return ErrorCode.PROCESSOR_ERROR
