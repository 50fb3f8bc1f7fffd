"""The Adyen adapter: refunds through Checkout v72, outcomes from HMAC-signed notifications.

Adyen acknowledges a refund with ``received`` and has no endpoint to read one: the outcome arrives in
a REFUND notification (Capabilities says so, and the core decides from that). Stateless (STYLE rule 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx2

from refundwatch.gateways import calls
from refundwatch.gateways.adyen import errors
from refundwatch.gateways.adyen import transformers as tx
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
from refundwatch.gateways.retry_after import parse_retry_after
from refundwatch.lib.crypto import constant_time_equals

__all__ = ["API_VERSION", "AdyenGateway", "live_base_url"]

API_VERSION = "v72"

_MESSAGE_CHARS = calls.MESSAGE_CHARS
NO_READ_ENDPOINT = "Adyen has no endpoint to read a refund: its outcome comes from notifications"

_SCRUB_RULES: ScrubRules = (
    # API keys: long base64-like strings starting "AQE" (Customer Area > API credentials).
    (re.compile(r"(?<![A-Za-z0-9+/])AQE[A-Za-z0-9+/=_.\-*]{12,}"), "AQE****"),
    (re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)\b(basic|bearer)\s+[^\s\"',;]+"), r"\1 [REDACTED]"),
    # HMAC keys are 64 hex characters (32 bytes); any hex run of 32+ is masked.
    (re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])"), "[REDACTED]"),
    # 13-19 digits, optionally grouped by spaces or dashes, passing Luhn: card-number-like. Luhn keeps
    # most pspReferences (16 characters, often all digits) readable on the timeline.
    (re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])"), lambda m: _mask_card(m.group())),
)


def _mask_card(text: str) -> str:
    digits = [int(c) for c in text if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "[REDACTED]" if total % 10 == 0 else text


_LIVE_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$")
# Values sent in headers (X-API-Key, the report user's basic auth): printable ASCII without spaces, or
# httpx2 cannot send them (a non-ASCII key crashed every attempt).
_HEADER_TOKEN = re.compile(r"[!-~]+")


def live_base_url(live_prefix: str) -> str:
    """The live Checkout URL, as the SDK builds it (Adyen/client.py ``_determine_api_url``)."""
    return f"https://{live_prefix}-checkout-live.adyenpayments.com/checkout"


class AdyenGateway:
    processor: str = "adyen"
    # The SDK's test Checkout URL (services/checkout: ``https://checkout-test.adyen.com/v72``).
    default_base_url: str = "https://checkout-test.adyen.com"
    secret_fields: tuple[str, ...] = ("api_key", "hmac_key")
    option_fields: tuple[str, ...] = ("merchant_account",)
    optional_secret_fields: tuple[str, ...] = ("webhook_password", "report_password")
    optional_option_fields: tuple[str, ...] = ("live_prefix", "webhook_username", "report_username")
    capabilities: Capabilities = Capabilities(
        reads_refunds=False, first_answer_final=False, refundable_queryable=False, webhook_ack="[accepted]"
    )
    # "Idempotency keys are valid for a minimum period of 31 days after first submission" (Adyen,
    # API idempotency; GATEWAYS.md).
    idempotency_retention_seconds: float = 31 * 24 * 3600

    # --- connection fields ----------------------------------------------------------------------------

    def check_fields(self, values: Mapping[str, str]) -> None:
        """Refuse malformed connection fields (ValueError with a one-line reason)."""
        hmac_key = values.get("hmac_key", "")
        if len(hmac_key) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", hmac_key):
            raise ValueError("hmac_key must be hex (an even number of 0-9 and a-f characters)")
        if not _HEADER_TOKEN.fullmatch(values.get("api_key", "")):
            raise ValueError("api_key must be printable ASCII characters without spaces")
        user = values.get("report_username")
        if user is not None and (not _HEADER_TOKEN.fullmatch(user) or ":" in user):
            # A colon would split basic auth's user from its password.
            raise ValueError("report_username must be printable ASCII characters without spaces or ':'")
        password = values.get("report_password")
        if password is not None and not _HEADER_TOKEN.fullmatch(password):
            raise ValueError("report_password must be printable ASCII characters without spaces")
        prefix = values.get("live_prefix")
        if prefix is not None and not _LIVE_PREFIX.match(prefix):
            raise ValueError("live_prefix must be letters, digits and dashes (Developers > API URLs)")
        if ("webhook_username" in values) != ("webhook_password" in values):
            raise ValueError("webhook_username and webhook_password go together")
        if ("report_username" in values) != ("report_password" in values):
            # The report user's basic auth (Developers > API credentials): one is useless alone.
            raise ValueError("report_username and report_password go together")

    def base_url(self, creds: Credentials) -> str:
        """The connection's base_url; with only a live_prefix, the live URL built from it."""
        url = creds.base_url.rstrip("/")
        prefix = creds.options.get("live_prefix")
        if prefix and url == self.default_base_url:
            return live_base_url(prefix)
        return url

    # --- refunds --------------------------------------------------------------------------------------

    async def create_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult:
        merchant_account = creds.options.get("merchant_account", "")
        try:
            body = tx.build_refund_body(request, merchant_account)
        except ValueError as exc:
            raise GatewayError(ErrorCode.INVALID_REQUEST, f"not sent to Adyen: {exc}") from None
        # Quoted so a reference can never walk to another path.
        path = f"/{API_VERSION}/payments/{quote(request.payment_reference, safe='')}/refunds"
        response, exchange = await self._call(
            client, creds, "POST", path, body=body, idempotency_key=request.idempotency_key
        )
        if not response.is_success:
            raise self._error(response, exchange)
        try:
            refund = tx.parse_refund(json.loads(response.content))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            # A 2xx is no refusal: the refund may exist.
            raise self._unknown(response, exchange, f"a malformed answer: {reason}") from None
        mismatch = tx.refund_mismatch(refund, request, merchant_account)
        if mismatch is not None:
            # The refund may exist in a shape nobody asked for: a person must look, never a retry.
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH,
                self.scrub(f"{mismatch} (Adyen pspReference {refund.psp_reference})")[:_MESSAGE_CHARS],
                status_code=response.status_code,
                exchange=exchange,
            )
        return RefundResult(
            status=tx.map_status(refund.status),  # "received": pending, never succeeded
            gateway_refund_id=refund.psp_reference,
            raw_status=refund.status,
            amount=refund.amount,
            currency=refund.currency,
            exchange=exchange,
        )

    async def get_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, gateway_refund_id: str
    ) -> RefundResult:
        raise GatewayError(ErrorCode.INVALID_REQUEST, NO_READ_ENDPOINT)

    async def find_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult | None:
        raise GatewayError(ErrorCode.INVALID_REQUEST, NO_READ_ENDPOINT)

    async def health_check(self, client: httpx2.AsyncClient, creds: Credentials) -> HealthResult:
        """``POST /paymentMethods`` for the merchant account: authenticated, read-only, light."""
        started = time.perf_counter()
        body = {"merchantAccount": creds.options.get("merchant_account", "")}
        try:
            response, exchange = await self._call(
                client, creds, "POST", f"/{API_VERSION}/paymentMethods", body=body
            )
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

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        """Basic auth (when configured) for the whole delivery, then each item's hmacSignature.

        Adyen signs no timestamp: replays are harmless because events dedupe on
        (pspReference, eventCode, success).
        """
        hmac_key = creds.secrets.get("hmac_key")
        if hmac_key is None or not hmac_key.reveal():
            raise WebhookVerificationError("no Adyen hmac_key is configured")
        self._check_basic_auth(creds, headers)
        live, items = tx.parse_delivery(body)  # MalformedError (a ValueError) when malformed
        return [
            WebhookItem(tx.single_item_body(live, item), self._item_error(item, hmac_key.reveal()))
            for item in items
        ]

    def verify_webhook(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        """All or nothing: every item must verify."""
        try:
            items = self.verify_items(creds, headers, body, now=now)
        except ValueError as exc:
            raise WebhookVerificationError(f"malformed notification: {exc}") from None
        for index, item in enumerate(items):
            if item.error is not None:
                raise WebhookVerificationError(f"notification item {index}: {item.error}")

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        _, items = tx.parse_delivery(body)
        return [tx.parse_item(item) for item in items]

    # --- secrets --------------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return apply_scrub_rules(_SCRUB_RULES, text)

    # --- internals ------------------------------------------------------------------------------------

    @staticmethod
    def _check_basic_auth(creds: Credentials, headers: Mapping[str, str]) -> None:
        username = creds.options.get("webhook_username")
        password = creds.secrets.get("webhook_password")
        if not username and password is None:
            return
        expected = f"{username or ''}:{password.reveal() if password else ''}".encode()
        values = [value for name, value in headers.items() if name.lower() == "authorization"]
        if len(values) != 1:
            raise WebhookVerificationError("missing HTTP Basic authentication")
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "basic":
            raise WebhookVerificationError("missing HTTP Basic authentication")
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError("malformed HTTP Basic authentication") from None
        if not constant_time_equals(given, expected):
            raise WebhookVerificationError("HTTP Basic authentication does not match")

    @staticmethod
    def _item_error(item: Mapping[str, Any], hex_key: str) -> str | None:
        additional = item.get("additionalData")
        signature = additional.get("hmacSignature") if isinstance(additional, dict) else None
        # The SDK's is_valid_hmac_notification returns None here; only a match is valid.
        if not isinstance(signature, str) or not signature:
            return "missing hmacSignature"
        try:
            expected = tx.item_signature(item, hex_key)
        except ValueError as exc:
            return str(exc)
        if not constant_time_equals(expected, signature):
            return "hmacSignature does not match"
        return None

    async def _call(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        method: str,
        path: str,
        *,
        body: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> tuple[httpx2.Response, Exchange]:
        """One timed request. Every httpx2 failure becomes a GatewayError carrying an Exchange."""
        api_key = creds.secrets.get("api_key")
        if api_key is None or not api_key.reveal():
            raise GatewayError(ErrorCode.AUTH_FAILED, "no Adyen api_key is configured")
        headers = {"X-API-Key": api_key.reveal(), "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = tx.adyen_idempotency_key(idempotency_key)
        url = self.base_url(creds) + path
        return await calls.call(
            client,
            "Adyen",
            method,
            url,
            path,
            timeout_seconds=creds.timeout_seconds,
            headers=headers,
            scrub=self.scrub,
            json=body,
        )

    def _unknown(self, response: httpx2.Response, exchange: Exchange, what: str) -> GatewayError:
        return calls.outcome_unknown("Adyen", response, exchange, what, self.scrub)

    def _error(self, response: httpx2.Response, exchange: Exchange) -> GatewayError:
        error = errors.parse_error(as_json(response))
        code = errors.map_error(response.status_code, error)
        detail = error.message or response.reason_phrase or "no message"
        label = "/".join(filter(None, (error.error_type, error.error_code))) or "http"
        return GatewayError(
            code,
            self.scrub(f"Adyen answered {response.status_code} ({label}): {detail}")[:_MESSAGE_CHARS],
            processor_code=error.error_code,
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
            exchange=exchange,
        )
