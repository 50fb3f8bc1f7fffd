"""PayPal's wire format (Payments v2, Webhooks v1), written from PayPal's OpenAPI documents
(``payments_payment_v2.json``, ``notifications_webhooks_v1.json``) and paypal-server-sdk 2.4.0.
Pure functions and types only; nothing here comes from refundwatch's PayPal adapter (STYLE rule 12).

Sources of the error answers (the simulator keeps its own notes, STYLE rule 12):

- ``UNPROCESSABLE_ENTITY`` with the issues and descriptions of the spec's ``captures.refund-422``
  (the descriptions are the spec's enums, word for word); ``DECIMALS_NOT_SUPPORTED`` and
  ``DECIMAL_PRECISION`` carry no enum there: their texts are ours.
- ``RESOURCE_NOT_FOUND`` / ``INVALID_RESOURCE_ID`` (404), ``RESOURCE_CONFLICT`` /
  ``PREVIOUS_REQUEST_IN_PROGRESS`` (409), ``INVALID_REQUEST`` (400, issues of ``captures.refund-400``),
  ``AUTHENTICATION_FAILURE`` (401), ``INTERNAL_SERVER_ERROR`` (500), ``SERVICE_UNAVAILABLE`` (503):
  the spec's ``error_4xx``/``error_5xx`` names and messages.
- OAuth answers (``invalid_client``, ``invalid_token``, ``unsupported_grant_type``) are RFC 6749 shapes
  as PayPal answers them (``{"error", "error_description"}``), not in the specs.
"""

from __future__ import annotations

import datetime
import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..asgi import decode_json

__all__ = [
    "ISSUES",
    "PAYPAL_CURRENCIES",
    "PayPalError",
    "RefundAsk",
    "debug_id",
    "format_value",
    "new_id",
    "now_time",
    "parse_refund_request",
    "parse_value",
    "parse_verify_request",
]

_ALNUM = string.ascii_uppercase + string.digits
_UNPROCESSABLE = (
    "The requested action could not be performed, semantically incorrect, or failed business validation."
)
_INVALID_REQUEST = "Request is not well-formed, syntactically incorrect, or violates schema."
# The issues of ``captures.refund-422``, each with its description (the spec's enum where it has one).
ISSUES: Mapping[str, str] = {
    "CANNOT_BE_ZERO_OR_NEGATIVE": (
        "Must be greater than zero. If the currency supports decimals, only two decimal place precision "
        "is supported."
    ),
    "DECIMAL_PRECISION": "If the currency supports decimals, only two decimal place precision is supported.",
    "DECIMALS_NOT_SUPPORTED": "Currency does not support decimals.",
    "INVALID_CURRENCY_CODE": "Currency code is invalid or is not currently supported.",
    "CURRENCY_MISMATCH": "Currency code should be the same for all amounts in the request.",
    "CANNOT_BE_NEGATIVE": "Must be greater than or equal to zero.",
    "CAPTURE_FULLY_REFUNDED": "The capture has already been fully refunded",
    "REFUND_CAPTURE_CURRENCY_MISMATCH": "Refund must be in the same currency as the capture",
    "REFUND_NOT_ALLOWED": "Capture cannot be refunded.",
    "REFUND_TIME_LIMIT_EXCEEDED": "You are over the time limit to perform a refund on this capture",
    "REFUND_AMOUNT_EXCEEDED": (
        "The refund amount must be less than or equal to the capture amount that has not yet been refunded."
    ),
    "REFUND_AMOUNT_TOO_LOW": (
        "The amount after applying currency conversion is zero and hence the capture cannot be refunded. "
        "The currency conversion is required because the currency of the capture is different than the "
        "currency in which the amount was settled into the payee account."
    ),
    "REFUND_FAILED_INSUFFICIENT_FUNDS": (
        "Capture could not be refunded due to insufficient funds. Please check to see if you have "
        "sufficient funds in your PayPal account or if the bank account linked to your PayPal account is "
        "verified and has sufficient funds."
    ),
    "PARTIAL_REFUND_NOT_ALLOWED": "You cannot do a refund less than the original capture amount.",
    "MAX_NUMBER_OF_REFUNDS_EXCEEDED": (
        "You have exceeded the maximum number of refund attempts for this capture."
    ),
    "PENDING_CAPTURE": (
        "Cannot initiate a refund as the capture is pending. Capture is typically pending when the payer "
        "has funded the transaction using e-check/bank funded."
    ),
    "DUPLICATE_INVOICE_ID": "Invoice ID was previously used to refund a capture.",
    "PAYEE_ACCOUNT_LOCKED_OR_CLOSED": (
        "Transaction could not complete because payee account is locked or closed."
    ),
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": "The payer account cannot be used for this transaction.",
    "PAYEE_ACCOUNT_RESTRICTED": "Payee account is restricted.",
    "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK": (
        "Refunds are not allowed on this capture due to a chargeback on the card or bank. Please contact "
        "the payee to resolve the chargeback."
    ),
    "TRANSACTION_DISPUTED": (
        "Partial refunds cannot be offered at this time because there is an open case on this "
        "transaction. Visit the PayPal Resolution Center to review this case."
    ),
    "PLATFORM_FEE_EXCEEDED": (
        "Platform fee amount specified exceeds the amount that is available for refund. You can only "
        "refund up to the available platform fee amount. This error is also returned when no platform_fee"
        " was specified or was zero when the payment was captured."
    ),
    "REFUND_IS_RESTRICTED": (
        "This refund can only be processed by the API caller that had 'captured' the transaction. If you "
        "facilitate your transactions via a platform/partner, please initiate a refund through them."
    ),
    "PLATFORM_FEE_NOT_ENABLED": (
        "The API Caller account is not setup to be able to process refunds with 'platform_fees'. Please "
        "contact your Account Manager. This feature is useful when you want to contribute a portion of "
        "the 'platform_fees' you had capture as part of the refund being processed."
    ),
}
_REQUEST_FIELDS = frozenset({"amount", "custom_id", "invoice_id", "note_to_payer", "payment_instruction"})
_STRING_LIMITS = {"custom_id": 127, "invoice_id": 127, "note_to_payer": 255}
_VALUE = re.compile(r"^(-?[0-9]+)(?:\.([0-9]+))?$")  # the spec's money.value pattern, less ".5"
# PayPal's currency codes (developer.paypal.com/api/rest/reference/currency-codes) with the ISO 4217
# exponent refundwatch's minor units use. HUF, JPY and TWD: "This currency does not support decimals.
# If you pass a decimal amount, an error occurs." (a HUF or TWD amount is whole units, 100 minor units each).
PAYPAL_CURRENCIES: Mapping[str, int] = {
    **dict.fromkeys(
        [
            *("AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "MYR", "MXN"),
            *("TWD", "NZD", "NOK", "PHP", "PLN", "GBP", "RUB", "SGD", "SEK", "CHF", "THB", "USD"),
        ],
        2,
    ),
    "JPY": 0,
}
NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})


class PayPalError(Exception):
    """An error answer in PayPal's shape: ``{name, message, debug_id, details[], links[]}``."""

    def __init__(
        self,
        status: int,
        name: str,
        message: str,
        issue: str | None = None,
        description: str | None = None,
        *,
        field: str | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.issue = issue
        self.description = description
        self.field = field
        self.value = value

    def body(self, debug: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "message": self.message, "debug_id": debug or debug_id()}
        anchor = self.name
        if self.issue is not None:
            detail: dict[str, Any] = {}
            if self.field is not None:
                detail["field"] = self.field
                if self.value is not None:
                    detail["value"] = self.value
                detail["location"] = "body"
            detail["issue"] = self.issue
            if self.description is not None:
                detail["description"] = self.description
            body["details"] = [detail]
            anchor = self.issue
        body["links"] = [
            {
                "href": f"https://developer.paypal.com/docs/api/payments/v2/#error-{anchor}",
                "rel": "information_link",
                "method": "GET",
            }
        ]
        return body


def unprocessable(issue: str, *, field: str | None = None, value: str | None = None) -> PayPalError:
    return PayPalError(
        422, "UNPROCESSABLE_ENTITY", _UNPROCESSABLE, issue, ISSUES[issue], field=field, value=value
    )


def invalid_request(
    issue: str, description: str, *, field: str | None = None, value: str | None = None
) -> PayPalError:
    return PayPalError(400, "INVALID_REQUEST", _INVALID_REQUEST, issue, description, field=field, value=value)


def not_found() -> PayPalError:
    return PayPalError(
        404,
        "RESOURCE_NOT_FOUND",
        "The specified resource does not exist.",
        "INVALID_RESOURCE_ID",
        "Specified resource ID does not exist. Please check the resource ID and try again.",
    )


def in_progress() -> PayPalError:
    return PayPalError(
        409,
        "RESOURCE_CONFLICT",
        "The server has detected a conflict while processing this request.",
        "PREVIOUS_REQUEST_IN_PROGRESS",
        "A previous request on this resource is currently in progress. Please wait for sometime and try "
        "again. It is best to space out the initial and the subsequent request(s) to avoid receiving this "
        "error.",
    )


def authentication_failure() -> PayPalError:
    return PayPalError(
        401,
        "AUTHENTICATION_FAILURE",
        "Authentication failed due to missing authorization header, or invalid authentication credentials.",
    )


def server_error(status: int) -> PayPalError:
    if status == 503:
        return PayPalError(503, "SERVICE_UNAVAILABLE", "Service Unavailable.")
    return PayPalError(status, "INTERNAL_SERVER_ERROR", "An internal server error occurred.")


def new_id(length: int = 17) -> str:
    """A PayPal resource id: upper-case letters and digits (``1JU08902781691411``)."""
    return "".join(random.choices(_ALNUM, k=length))


def debug_id() -> str:
    return "%013x" % random.getrandbits(52)  # noqa: UP031 - PayPal's 13-hex debug ids


def now_time(*, millis: bool = False) -> str:
    """Now in PayPal's Internet date-time form, UTC: ``2026-12-06T18:30:00Z`` (or ``.123Z``)."""
    now = datetime.datetime.now(datetime.UTC)
    if millis:
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_of(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- money ------------------------------------------------------------------------------------------
def parse_value(currency: str, value: object, field: str = "/amount/value") -> int:
    """``value`` (a decimal string) in minor units of ``currency``, or the error PayPal answers."""
    if not isinstance(value, str) or len(value) > 32:
        raise invalid_request(
            "INVALID_PARAMETER_SYNTAX",
            "The value of a field does not conform to the expected format.",
            field=field,
        )
    match = _VALUE.match(value)
    if match is None:
        raise invalid_request(
            "INVALID_PARAMETER_SYNTAX",
            "The value of a field does not conform to the expected format.",
            field=field,
            value=value,
        )
    whole, fraction = match.group(1), match.group(2) or ""
    exponent: int = PAYPAL_CURRENCIES[currency]
    if fraction and currency in NO_DECIMALS:
        raise unprocessable("DECIMALS_NOT_SUPPORTED", field=field, value=value)
    if len(fraction) > exponent:
        raise unprocessable("DECIMAL_PRECISION", field=field, value=value)
    if whole.startswith("-"):
        raise unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", field=field, value=value)
    minor = int(whole + fraction.ljust(exponent, "0"))  # the digits, shifted by the exponent
    if minor <= 0:
        raise unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", field=field, value=value)
    return minor


def format_value(currency: str, minor: int) -> str:
    """Minor units as PayPal writes them: ``"10.00"``; whole units for HUF, JPY, TWD (``"1500"``)."""
    exponent = PAYPAL_CURRENCIES.get(currency, 2)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    if exponent == 0 or (currency in NO_DECIMALS and fraction == 0):
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{exponent}d}"


def money(currency: str, minor: int) -> dict[str, str]:
    return {"currency_code": currency, "value": format_value(currency, minor)}


# -- the refund request -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefundAsk:
    """A refund request as read: ``value`` is None for "the whole rest of the capture"."""

    currency: str | None
    value: str | None
    invoice_id: str | None
    custom_id: str | None
    note_to_payer: str | None


def parse_refund_request(data: object) -> RefundAsk:
    """The refund request in decoded JSON ``data`` (``None``: an empty body, a full refund)."""
    if data is None:
        return RefundAsk(None, None, None, None, None)
    if not isinstance(data, dict):
        raise invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
    unknown = sorted(set(data) - _REQUEST_FIELDS)
    if unknown:
        raise invalid_request(
            "UNKNOWN_FIELD", "A field in the request is not recognized.", field=f"/{unknown[0]}"
        )
    strings: dict[str, str | None] = {}
    for name, limit in _STRING_LIMITS.items():
        raw = data.get(name)
        if raw is not None and not isinstance(raw, str):
            raise invalid_request(
                "INVALID_PARAMETER_SYNTAX",
                "The value of a field does not conform to the expected format.",
                field=f"/{name}",
            )
        if raw is not None and not 1 <= len(raw) <= limit:
            raise invalid_request(
                "INVALID_STRING_LENGTH",
                "The value of a field is either too short or too long.",
                field=f"/{name}",
            )
        strings[name] = raw
    currency: str | None = None
    value: str | None = None
    amount = data.get("amount")
    if amount is not None:
        if not isinstance(amount, dict):
            raise invalid_request(
                "INVALID_PARAMETER_SYNTAX",
                "The value of a field does not conform to the expected format.",
                field="/amount",
            )
        code, raw_value = amount.get("currency_code"), amount.get("value")
        if code is None:
            raise invalid_request(
                "MISSING_REQUIRED_PARAMETER",
                "A required field / parameter is missing.",
                field="/amount/currency_code",
            )
        if raw_value is None:
            raise invalid_request(
                "MISSING_REQUIRED_PARAMETER",
                "A required field / parameter is missing.",
                field="/amount/value",
            )
        if not isinstance(code, str) or code not in PAYPAL_CURRENCIES:
            raise unprocessable("INVALID_CURRENCY_CODE", field="/amount/currency_code", value=str(code))
        currency = code
        value = raw_value if isinstance(raw_value, str) else repr(raw_value)
        if not isinstance(raw_value, str):
            raise invalid_request(
                "INVALID_PARAMETER_SYNTAX",
                "The value of a field does not conform to the expected format.",
                field="/amount/value",
                value=value,
            )
    return RefundAsk(currency, value, strings["invoice_id"], strings["custom_id"], strings["note_to_payer"])


# -- verify-webhook-signature -----------------------------------------------------------------------
_VERIFY_FIELDS = (
    "auth_algo",
    "cert_url",
    "transmission_id",
    "transmission_sig",
    "transmission_time",
    "webhook_id",
)


def _validation(field: str, issue: str) -> PayPalError:
    return PayPalError(400, "VALIDATION_ERROR", "Invalid request - see details", issue, None, field=field)


def parse_verify_request(body: bytes) -> dict[str, Any]:
    """A ``verify_webhook_signature`` body with every required field, or the 400 PayPal answers."""
    try:
        data = decode_json(body or b"null")
    except msgspec.DecodeError as exc:
        raise invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from exc
    if not isinstance(data, dict):
        raise _validation("body", "Request body must be a JSON object")
    for name in _VERIFY_FIELDS:
        if not isinstance(data.get(name), str) or not data[name]:
            raise _validation(name, "Required field cannot be blank")
    if not isinstance(data.get("webhook_event"), dict):
        raise _validation("webhook_event", "Required field cannot be blank")
    return data
