"""The Checkout.com adapter: accepted-only refunds, read back through the payment's actions.

- Refund: ``POST /payments/{id}/refunds`` with ``Cko-Idempotency-Key`` (refundwatch's stored key) and a
  JSON body ``{amount (minor units), reference (the refund's id), metadata {refund_id, idempotency_key}}``.
  The answer ``202 {action_id, reference}`` only accepts the refund: it is processing, and the outcome
  comes from the ``payment_refunded`` / ``payment_refund_declined`` / ``payment_refund_pending`` webhooks
  or from the Refund action in ``GET /payments/{id}/actions`` (``approved`` true/false).
  gateway_refund_id = the action id.
- Reading: Checkout.com has no call that reads an action by its id alone, so a refund is read through its
  payment (``get_payment_refund``; the core passes the payment with ``gateways.base.read_refund``), and
  an attempt is found by its reference and metadata key (``find_refund``).
- Idempotency: a key is kept 24 hours and only 2xx answers are cached, so a re-send after a 5xx or a
  timeout may execute again. Capabilities.idempotency_covers_errors is False: the core never re-sends
  such a refund without having read the actions first (refunds.lookup).
- Refundable balance: ``GET /payments/{id}`` ``balances.available_to_refund`` (``refundable``), which the
  core checks before a first send (Capabilities.refundable_queryable).
- Auth: ``Authorization: Bearer sk_…`` on the current platform (option ``platform = "default"``), the bare
  key on the previous one (``platform = "previous"``), as checkout-sdk 4.8.1's SdkAuthorization does.
- Webhooks: ``Cko-Signature`` = lowercase hex HMAC-SHA256 of the raw body with the webhook signature key;
  when the connection sets ``webhook_authorization``, the ``Authorization`` header must equal it.

Stateless (STYLE rule 1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx2

from refundwatch.gateways import calls
from refundwatch.gateways.base import (
    Capabilities,
    Credentials,
    ErrorCode,
    Exchange,
    GatewayError,
    HealthResult,
    RefundRequest,
    RefundResult,
    ScrubRules,
    WebhookEvent,
    WebhookItem,
    WebhookVerificationError,
    apply_scrub_rules,
    as_json,
)
from refundwatch.gateways.checkout import errors
from refundwatch.gateways.checkout import transformers as tx
from refundwatch.gateways.retry_after import parse_retry_after
from refundwatch.lib.crypto import constant_time_equals
from refundwatch.lib.money import exponent, to_decimal_string

__all__ = ["LIVE_BASE_URL", "SANDBOX_BASE_URL", "CheckoutGateway"]

# checkout-sdk 4.8.1 environment.py: production() and sandbox() base_uri.
LIVE_BASE_URL: Final = "https://api.checkout.com"
SANDBOX_BASE_URL: Final = "https://api.sandbox.checkout.com"
SIGNATURE_HEADER: Final = "cko-signature"
NEEDS_PAYMENT: Final = "Checkout.com reads a refund through its payment's actions: the payment id is needed"

_MESSAGE_CHARS = calls.MESSAGE_CHARS
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_PRINTABLE = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces
_HEADER_VALUE = re.compile(r"[!-~](?:[ -~]{0,254}[!-~])?")  # printable, inner spaces allowed


def _mask_card(match: re.Match[str]) -> str:
    text = match.group()
    digits = [int(c) for c in text if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "[REDACTED]" if total % 10 == 0 else text


_SCRUB_RULES: ScrubRules = (
    # Secret keys of both platforms (sk_…, sk_sbox_…, sk_test_…-…), wherever they appear.
    (re.compile(r"(?<![A-Za-z0-9])sk_[A-Za-z0-9_\-*#$=]{6,}"), "sk_****"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), r"\1 [REDACTED]"),
    # Named secrets in settings, logs or JSON, whatever their values look like.
    (
        re.compile(
            r"(?i)\b(secret_key|webhook_signature_key|webhook_authorization|signature_key|authorization"
            r"|cko-signature)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1\2[REDACTED]",
    ),
    # Long hex runs (Cko-Signature values are 64): refundwatch's keys (rw_ + 32 hex) stay readable.
    (re.compile(r"(?<![0-9A-Za-z_])[0-9A-Fa-f]{40,}(?![0-9A-Za-z_])"), "[REDACTED]"),
    # 13-19 digits, optionally grouped by spaces or dashes, passing Luhn: card-number-like.
    (re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])"), _mask_card),
)


def _header(headers: Mapping[str, str], name: str) -> list[str]:
    return [value for key, value in headers.items() if key.lower() == name]


def signature(body: bytes, key: str) -> str:
    """Cko-Signature for ``body``: lowercase hex HMAC-SHA256 keyed with the webhook signature key."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class CheckoutGateway:
    processor: str = "checkout"
    default_base_url: str = LIVE_BASE_URL
    secret_fields: tuple[str, ...] = ("secret_key", "webhook_signature_key")
    option_fields: tuple[str, ...] = ()
    optional_secret_fields: tuple[str, ...] = ("webhook_authorization",)
    optional_option_fields: tuple[str, ...] = ("platform",)
    capabilities: Capabilities = Capabilities(
        reads_refunds=True,
        first_answer_final=False,  # 202 = accepted only
        refundable_queryable=True,  # balances.available_to_refund
        idempotency_covers_errors=False,  # only 2xx answers are cached
    )
    # Cko-Idempotency-Key: kept 24 hours (GATEWAYS.md; issue 17).
    idempotency_retention_seconds: float = 24 * 3600

    def __repr__(self) -> str:
        return "CheckoutGateway()"

    def check_amount(self, amount: int, currency: str) -> str | None:
        """Why Checkout.com cannot take this amount, or None: for three-decimal currencies "the last digit
        must always be a 0" (Format the amount value). Intake refuses it before anything is reserved."""
        if exponent(currency) == 3 and amount % 10:
            return (
                f"{currency.upper()} amounts must end in 0 at Checkout.com: "
                f"{to_decimal_string(amount, currency)} {currency.upper()} cannot be refunded there"
            )
        return None

    # --- connection fields ----------------------------------------------------------------------------

    def check_fields(self, values: Mapping[str, str]) -> None:
        """Refuse malformed connection fields (ValueError with a one-line reason, never the secret)."""
        platform = values.get("platform", "default")
        if platform not in tx.PLATFORMS:
            raise ValueError("platform must be 'default' or 'previous'")
        key = values.get("secret_key", "")
        if platform == "default" and not tx.DEFAULT_KEY.match(key):
            raise ValueError(
                "secret_key must be a current-platform secret key (sk_ or sk_sbox_ and 27 base32 "
                'characters), or set platform = "previous"'
            )
        if platform == "previous" and not tx.PREVIOUS_KEY.match(key):
            raise ValueError("secret_key must be a previous-platform secret key (sk_ or sk_test_ and a UUID)")
        if not _PRINTABLE.fullmatch(values.get("webhook_signature_key", "")):
            raise ValueError("webhook_signature_key must be 1-256 printable characters without spaces")
        authorization = values.get("webhook_authorization")
        if authorization is not None and not _HEADER_VALUE.fullmatch(authorization):
            raise ValueError("webhook_authorization must be 1-256 printable characters (a header value)")

    @staticmethod
    def platform(creds: Credentials) -> str:
        """``default`` (Bearer) unless the connection says ``previous`` (bare key)."""
        return "previous" if creds.options.get("platform") == "previous" else "default"

    # --- refunds --------------------------------------------------------------------------------------

    async def create_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult:
        try:
            body = tx.build_refund_body(request)
        except ValueError as exc:
            raise GatewayError(ErrorCode.INVALID_REQUEST, f"not sent to Checkout.com: {exc}") from None
        path = f"/payments/{quote(request.payment_reference, safe='')}/refunds"
        headers = {"Cko-Idempotency-Key": request.idempotency_key}
        response, exchange = await self._call(client, creds, "POST", path, body=body, headers=headers)
        if not response.is_success:
            raise self._error(response, exchange)
        try:
            accepted = tx.parse_accepted(json.loads(response.content))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            raise self._unknown(response, exchange, f"a malformed answer: {reason}") from None
        if accepted.reference is not None and not tx.reference_names(accepted.reference, request.refund_id):
            # An action exists for a reference nobody asked for: a person must look, never a retry.
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH,
                self.scrub(
                    f"Checkout.com accepted action {accepted.action_id} for reference {accepted.reference}, "
                    f"not {request.refund_id}"
                )[:_MESSAGE_CHARS],
                status_code=response.status_code,
                exchange=exchange,
            )
        return RefundResult(
            status=tx.ACCEPTED_STATUS,  # accepted only: processing, never succeeded
            gateway_refund_id=accepted.action_id,
            raw_status=f"accepted ({response.status_code})",
            exchange=exchange,
            idempotency_key=request.idempotency_key,
        )

    async def get_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, gateway_refund_id: str
    ) -> RefundResult:
        """An action id alone cannot be read: the core calls get_payment_refund (base.read_refund)."""
        raise GatewayError(ErrorCode.INVALID_REQUEST, NEEDS_PAYMENT)

    async def get_payment_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, payment_reference: str, gateway_refund_id: str
    ) -> RefundResult:
        """The Refund action ``gateway_refund_id`` of the payment. Not listed yet: pending (it was
        accepted under that id), never success."""
        if not gateway_refund_id or not payment_reference:
            raise GatewayError(ErrorCode.INVALID_REQUEST, NEEDS_PAYMENT)
        actions, exchange = await self._actions(client, creds, payment_reference)
        for action in actions:
            if action.id == gateway_refund_id:
                if action.type != tx.REFUND_ACTION:
                    raise GatewayError(
                        ErrorCode.RESPONSE_MISMATCH,
                        self.scrub(f"Checkout.com action {action.id} is a {action.type}, not a refund")[
                            :_MESSAGE_CHARS
                        ],
                        exchange=exchange,
                    )
                return self._result(action, exchange)
        return RefundResult(
            status=tx.ACCEPTED_STATUS,
            gateway_refund_id=gateway_refund_id,
            raw_status="accepted, not yet listed in the payment's actions",
            exchange=exchange,
        )

    async def find_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult | None:
        """The Refund action this attempt created (its reference and metadata key), or None when the
        payment's actions are readable and hold none. GatewayError when they cannot be read."""
        actions, exchange = await self._actions(client, creds, request.payment_reference)
        action = tx.attempt_action(actions, request)
        if action is None:
            return None
        if action.amount is not None and action.amount != request.amount:
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH,
                self.scrub(f"Checkout.com refund {action.id} is for {action.amount}, not {request.amount}")[
                    :_MESSAGE_CHARS
                ],
                exchange=exchange,
            )
        return self._result(action, exchange)

    async def refundable(
        self, client: httpx2.AsyncClient, creds: Credentials, payment_reference: str
    ) -> tuple[int, str] | None:
        """``(available_to_refund, currency)`` from ``GET /payments/{id}``, or None when the payment does
        not say. GatewayError when it cannot be read."""
        path = f"/payments/{quote(payment_reference, safe='')}"
        response, exchange = await self._call(client, creds, "GET", path)
        if not response.is_success:
            raise self._error(response, exchange)
        try:
            payment = tx.parse_payment(json.loads(response.content))
        except (ValueError, RecursionError):
            return None
        if payment.available_to_refund is None or payment.currency is None:
            return None
        return payment.available_to_refund, payment.currency

    async def health_check(self, client: httpx2.AsyncClient, creds: Credentials) -> HealthResult:
        """``GET /event-types`` with the secret key: authenticated, read-only, light."""
        started = time.perf_counter()
        try:
            response, exchange = await self._call(client, creds, "GET", "/event-types")
            if response.is_success:
                return HealthResult(ok=True, latency_ms=exchange.latency_ms)
            error = self._error(response, exchange)
            return HealthResult(ok=False, latency_ms=exchange.latency_ms, error=error.message)
        except GatewayError as exc:
            latency = exc.exchange.latency_ms if exc.exchange else calls.elapsed_ms(started)
            return HealthResult(ok=False, latency_ms=latency, error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a health probe reports, it never raises
            return HealthResult(ok=False, latency_ms=calls.elapsed_ms(started), error=type(exc).__name__)

    # --- webhooks -------------------------------------------------------------------------------------

    def verify_webhook(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        """The Authorization header (when configured), then Cko-Signature over the raw body.

        Checkout.com signs no timestamp: a replayed delivery is harmless because events dedupe on their id.
        """
        key = creds.secrets.get("webhook_signature_key")
        if key is None or not key.reveal():
            raise WebhookVerificationError("no Checkout.com webhook_signature_key is configured")
        expected_auth = creds.secrets.get("webhook_authorization")
        if expected_auth is not None and expected_auth.reveal():
            given = _header(headers, "authorization")
            if len(given) != 1:
                raise WebhookVerificationError("missing Authorization header")
            if not constant_time_equals(given[0].strip(), expected_auth.reveal()):
                raise WebhookVerificationError("Authorization header does not match")
        values = _header(headers, SIGNATURE_HEADER)
        if len(values) != 1 or not values[0].strip():
            raise WebhookVerificationError("missing Cko-Signature header")
        given_signature = values[0].strip()
        if not _HEX_SIGNATURE.fullmatch(given_signature):
            raise WebhookVerificationError("malformed Cko-Signature header")
        if not constant_time_equals(signature(body, key.reveal()), given_signature.lower()):
            raise WebhookVerificationError("Cko-Signature does not match")

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        """One event under one signature: all or nothing."""
        self.verify_webhook(creds, headers, body, now=now)
        return [WebhookItem(body)]

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return [tx.parse_event(body)]

    # --- secrets --------------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return apply_scrub_rules(_SCRUB_RULES, text)

    # --- internals ------------------------------------------------------------------------------------

    async def _call(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx2.Response, Exchange]:
        """One timed request with the secret key, Bearer or bare by platform."""
        key = creds.secrets.get("secret_key")
        if key is None or not key.reveal():
            raise GatewayError(ErrorCode.AUTH_FAILED, "no Checkout.com secret_key is configured")
        auth = key.reveal() if self.platform(creds) == "previous" else f"Bearer {key.reveal()}"
        sent = {"Authorization": auth, "Accept": "application/json", **(headers or {})}
        return await calls.call(
            client,
            "Checkout.com",
            method,
            creds.base_url.rstrip("/") + path,
            path,
            timeout_seconds=creds.timeout_seconds,
            headers=sent,
            scrub=self.scrub,
            json=body,
        )

    async def _actions(
        self, client: httpx2.AsyncClient, creds: Credentials, payment_reference: str
    ) -> tuple[list[tx.Action], Exchange]:
        path = f"/payments/{quote(payment_reference, safe='')}/actions"
        response, exchange = await self._call(client, creds, "GET", path)
        if not response.is_success:
            raise self._error(response, exchange)
        try:
            return tx.parse_actions(json.loads(response.content)), exchange
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            # Unreadable: it cannot tell whether the refund exists.
            raise self._unknown(response, exchange, f"unreadable actions: {reason}") from None

    def _unknown(self, response: httpx2.Response, exchange: Exchange, what: str) -> GatewayError:
        return calls.outcome_unknown("Checkout.com", response, exchange, what, self.scrub)

    def _error(self, response: httpx2.Response, exchange: Exchange) -> GatewayError:
        error = errors.parse_error(as_json(response))
        code = errors.map_error(response.status_code, error)
        codes = ", ".join(error.error_codes) if error.error_codes else errors.describe(response.status_code)
        request_id = error.request_id or response.headers.get("Cko-Request-Id")
        where = f" [request_id {request_id}]" if request_id else ""
        return GatewayError(
            code,
            self.scrub(f"Checkout.com answered {response.status_code} ({error.label}): {codes}{where}")[
                :_MESSAGE_CHARS
            ],
            processor_code=self._code(error.error_codes[0] if error.error_codes else error.error_type),
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
            exchange=exchange,
        )

    def _code(self, code: str | None) -> str | None:
        """A processor's code as refundwatch keeps it (processor_code is 128 characters), scrubbed."""
        return self.scrub(code)[:128] if code else None

    @staticmethod
    def _result(action: tx.Action, exchange: Exchange) -> RefundResult:
        status = tx.map_action_status(action.approved)
        failure_code, failure_message = tx.failure_details(status, action.response_summary)
        key = action.metadata.get(tx.META_KEY)
        return RefundResult(
            status=status,
            gateway_refund_id=action.id,
            raw_status=action.raw_status,
            amount=action.amount,
            failure_code=failure_code,
            failure_message=failure_message,
            processor_code=action.response_code[:128] if failure_code and action.response_code else None,
            exchange=exchange,
            idempotency_key=key if isinstance(key, str) and key else None,
        )
