"""Stripe's wire format, written from Stripe's API reference and checked against stripe-python 16.1.

Pure functions and types only: form parameters in, JSON objects and error bodies out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from ..state import Refund

__all__ = [
    "DEFAULT_API_VERSION",
    "CreateParams",
    "ListParams",
    "StripeError",
    "api_key_from_header",
    "balance_object",
    "charge_id_for",
    "error_body",
    "event_object",
    "mask_key",
    "parse_create",
    "parse_list",
    "refund_object",
    "signature_header",
]

# The API version stripe-python 16.1.0 pins; answered when a request sends no Stripe-Version.
DEFAULT_API_VERSION = "2026-10-28.endive"
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
FAILURE_REASONS = ("expired_or_canceled_card", "lost_or_stolen_card", "declined")

_CREATE_PARAMS = frozenset(
    {
        "amount",
        "charge",
        "currency",
        "customer",
        "expand",
        "instructions_email",
        "metadata",
        "origin",
        "payment_intent",
        "reason",
        "refund_application_fee",
        "reverse_transfer",
    }
)
_LIST_PARAMS = frozenset(
    {"charge", "created", "ending_before", "expand", "limit", "payment_intent", "starting_after"}
)
_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()  # noqa: SIM905
)
_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())  # noqa: SIM905
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


class StripeError(Exception):
    """An error answer in Stripe's format.

    ``saved`` tells whether an idempotent request keeps this answer: Stripe saves the result of
    every request that started executing, but not parameter validation failures.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.saved = saved

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.type, self.message, request_id, code=self.code, param=self.param)


def error_body(
    type_: str, message: str, request_id: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    error["message"] = message
    if param is not None:
        error["param"] = param
    error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}?t={int(time.time())}"
    error["type"] = type_
    return {"error": error}


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param, saved=False)


# -- authentication ---------------------------------------------------------------------------------
def api_key_from_header(authorization: str | None) -> str | None:
    """The secret key from ``Authorization: Bearer sk_...`` (or Basic ``sk_...:``), if any."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def mask_key(key: str) -> str:
    """``sk_test_****abcd``: the key's kind and mode, and its last four characters."""
    prefix = ""
    for candidate in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_"):
        if key.startswith(candidate):
            prefix = candidate
            break
    tail = key[len(prefix) :][-4:] if len(key) - len(prefix) > 4 else ""
    return f"{prefix}****{tail}"


# -- parameters -------------------------------------------------------------------------------------
@dataclass(slots=True)
class CreateParams:
    charge: str | None = None
    payment_intent: str | None = None
    amount: int | None = None
    currency: str | None = None
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _split(name: str) -> tuple[str, str | None]:
    """``metadata[order]`` → ``("metadata", "order")``; ``amount`` → ``("amount", None)``."""
    base, bracket, rest = name.partition("[")
    if not bracket:
        return name, None
    return base, rest[:-1] if rest.endswith("]") else rest


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name) from None
    if number < 1:
        raise _invalid("Invalid positive integer", code="parameter_invalid_integer", param=name)
    return number


def parse_create(pairs: list[tuple[str, str]]) -> CreateParams:
    params = CreateParams()
    for name, value in pairs:
        base, sub = _split(name)
        if base not in _CREATE_PARAMS:
            raise _invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        if base == "metadata":
            if sub is None:
                if value:
                    raise _invalid("Invalid metadata: must be a hash", param="metadata")
                params.metadata.clear()
                continue
            if not sub or len(sub) > 40:
                raise _invalid("Metadata keys must be between 1 and 40 characters.", param=name)
            if len(value) > 500:
                raise _invalid("Metadata values can have up to 500 characters.", param=name)
            params.metadata[sub] = value
        elif sub is not None and base != "expand":
            raise _invalid(f"Invalid {base}: must be a string", param=base)
        elif base == "charge":
            params.charge = value
        elif base == "payment_intent":
            params.payment_intent = value
        elif base == "amount":
            params.amount = _positive_int("amount", value)
        elif base == "currency":
            params.currency = value
        elif base == "reason":
            if value not in REASONS:
                raise _invalid(f"Invalid reason: must be one of {', '.join(REASONS)}", param="reason")
            params.reason = value
    if len(params.metadata) > 50:
        raise _invalid("Invalid metadata: You can specify up to 50 keys.", param="metadata")
    if params.charge and params.payment_intent:
        raise _invalid("You can only specify one of these parameters: charge, payment_intent.")
    if not params.charge and not params.payment_intent:
        raise _invalid(
            "One of the following params should be provided for this request: payment_intent or charge.",
            code="parameter_missing",
        )
    return params


@dataclass(slots=True)
class ListParams:
    charge: str | None = None
    payment_intent: str | None = None
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None


def parse_list(pairs: list[tuple[str, str]]) -> ListParams:
    params = ListParams()
    for name, value in pairs:
        base, _ = _split(name)
        if base not in _LIST_PARAMS:
            raise _invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        if base == "limit":
            params.limit = _positive_int("limit", value)
            if params.limit > 100:
                raise _invalid(
                    "This value must be less than or equal to 100.",
                    code="parameter_invalid_integer",
                    param="limit",
                )
        elif base in {"charge", "payment_intent", "starting_after", "ending_before"}:
            setattr(params, base, value)
    if params.starting_after and params.ending_before:
        raise _invalid("You may only specify one of these parameters: ending_before, starting_after.")
    return params


def format_amount(amount: int, currency: str) -> str:
    """``$60.00``, ``¥500``, ``12.345 KWD``: how Stripe's messages show amounts."""
    currency = currency.upper()
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    whole, fraction = divmod(amount, 10**exponent)
    text = f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


# -- objects ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def charge_id_for(payment_intent: str) -> str:
    """The (stable) id of the charge behind a registered payment intent."""
    return "ch_" + hashlib.sha256(payment_intent.encode()).hexdigest()[:24]


def refund_object(refund: Refund) -> dict[str, Any]:
    extra = refund.extra
    status = refund.status
    obj: dict[str, Any] = {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": extra.get("balance_transaction"),
        "charge": extra.get("charge"),
        "created": refund.created,
        "currency": refund.currency.lower(),
        "destination_details": {
            "card": {
                "reference": extra.get("arn") if status == "succeeded" else None,
                "reference_status": "available" if status == "succeeded" else "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "metadata": refund.metadata,
        "payment_intent": extra.get("payment_intent"),
        "reason": refund.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    if status == "pending":
        obj["pending_reason"] = "processing"
    if status == "failed":
        obj["failure_balance_transaction"] = extra.get("failure_balance_transaction")
        obj["failure_reason"] = refund.failure_reason or "unknown"
    return obj


def list_object(refunds: list[Refund], params: ListParams) -> dict[str, Any]:
    """One page of ``refunds`` (newest first) as a Stripe list, after ``starting_after``/``ending_before``."""
    start, end = 0, len(refunds)
    cursor = params.starting_after or params.ending_before
    if cursor is not None:
        index = next((i for i, r in enumerate(refunds) if r.id == cursor), None)
        if index is None:
            param = "starting_after" if params.starting_after else "ending_before"
            raise StripeError(404, f"No such refund: '{cursor}'", code="resource_missing", param=param)
        if params.starting_after:
            start = index + 1
        else:
            end = index
            start = max(0, end - params.limit)
    page = refunds[start : min(end, start + params.limit)]
    has_more = start > 0 if params.ending_before else start + len(page) < end
    data = [refund_object(r) for r in page]
    return {"object": "list", "data": data, "has_more": has_more, "url": "/v1/refunds"}


def balance_object(livemode: bool) -> dict[str, Any]:
    funds = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
    return {"object": "balance", "available": funds, "livemode": livemode, "pending": funds}


def event_object(
    *,
    event_id: str,
    event_type: str,
    data_object: dict[str, Any],
    api_version: str,
    livemode: bool,
    request_id: str | None,
    idempotency_key: str | None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": data_object}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()),
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


def idempotency_mismatch(key: str, first_endpoint: str, endpoint: str) -> str:
    """The message of Stripe's ``idempotency_error`` for a key reused differently."""
    retry = f"Try using a key other than '{key}' if you meant to execute a different request."
    if first_endpoint != endpoint:
        return (
            "Keys for idempotent requests can only be used for the same endpoint they were first used for "
            f"('{first_endpoint}' vs '{endpoint}'). {retry}"
        )
    return (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        + retry
    )


def unrecognized_url(method: str, path: str) -> dict[str, Any]:
    """Stripe's answer (404, for every method) to a path it does not know."""
    message = (
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
        "help at https://support.stripe.com/."
    )
    return {"error": {"message": message, "type": "invalid_request_error"}}


def signature_header(secret: str, payload: bytes, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>``, as Stripe signs webhooks."""
    signed = str(timestamp).encode() + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
