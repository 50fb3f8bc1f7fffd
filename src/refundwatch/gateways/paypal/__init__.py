"""The PayPal adapter: refunds through Payments v2, OAuth bearer tokens, webhooks parsed by event type.

- Refund: ``POST /v2/payments/captures/{capture_id}/refund`` with ``PayPal-Request-Id`` (refundwatch's
  stored key; PayPal keeps it 45 days), ``Prefer: return=representation``, and a body carrying the
  amount as a decimal string, ``invoice_id`` (the attempt's key), ``custom_id`` (the refund's id) and
  ``note_to_payer``. Read back with ``GET /v2/payments/refunds/{id}``.
- Base URL: live, ``https://api-m.paypal.com``, when a connection gives none (as for Stripe, whose keys
  decide the mode, a PayPal app's credentials belong to one environment); a sandbox app sets
  ``base_url = "https://api-m.sandbox.paypal.com"``. (paypal-server-sdk 2.4.0 starts in its SANDBOX
  environment instead; both URLs are its Environment table's.)
- Tokens: ``auth`` (OAuth client credentials, cached process-wide in ``gateways.tokens``).
- Looking a refund up without its PayPal id: Payments v2 has no call that lists a capture's refunds,
  but the capture's order does (``GET /v2/checkout/orders/{id}``, its purchase units' ``payments.refunds``
  with their ``invoice_id``, the attempt's key), so ``find_refund`` reads the capture for its order and
  the order for the attempt's refund. A capture with no order cannot tell (GatewayError): the core then
  re-sends only while PayPal still remembers the PayPal-Request-Id (45 days: the same key returns the
  first refund, never a second), and otherwise leaves the refund for a person. Past those days the same
  invoice_id still guards it: PayPal refuses it as DUPLICATE_INVOICE_ID (errors.py).
- Webhook signatures are checked elsewhere (certificate or PayPal's verify call, chosen per connection
  with ``webhook_verification``); ``parse_webhook`` is here.

Stateless (STYLE rule 1): tokens live in the process-wide cache, nothing else is kept.
"""

from __future__ import annotations

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
from refundwatch.gateways.paypal import auth, errors, verification
from refundwatch.gateways.paypal import transformers as tx
from refundwatch.gateways.paypal.verification import verify_delivery
from refundwatch.gateways.retry_after import parse_retry_after

__all__ = ["LIVE_BASE_URL", "SANDBOX_BASE_URL", "PayPalGateway"]

LIVE_BASE_URL: Final = "https://api-m.paypal.com"
SANDBOX_BASE_URL: Final = "https://api-m.sandbox.paypal.com"
WEBHOOK_VERIFICATION_MODES: Final = ("certificate", "api")
NO_LOOKUP: Final = (
    "this PayPal capture names no order, the one place that lists its refunds: only a re-send with the "
    "same PayPal-Request-Id (remembered 45 days) can tell"
)
REMOTE_VERIFICATION: Final = "PayPal webhooks are verified remotely"

_MESSAGE_CHARS = calls.MESSAGE_CHARS


def _mask_card(match: re.Match[str]) -> str:
    text = match.group()
    digits = [int(c) for c in text if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "[REDACTED]" if total % 10 == 0 else text


_SCRUB_RULES: ScrubRules = (
    # The token field of a token answer, whatever its value looks like.
    (re.compile(r"(\"access_token\"\s*:\s*\")[^\"]*"), r"\1[REDACTED]"),
    (
        re.compile(r"(?i)\b(client_secret|access_token)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"),
        r"\1\2[REDACTED]",
    ),
    # PayPal access tokens ("A21AA…", base64url with dots and dashes).
    (re.compile(r"(?<![A-Za-z0-9])A21AA[A-Za-z0-9_\-.]{8,}"), "A21AA****"),
    (re.compile(r"(?i)\b(basic|bearer)\s+[^\s\"',;]+"), r"\1 [REDACTED]"),
    # Client secrets (and ids) are 80 base64url characters: any such run of 40 or more is masked.
    # PayPal's own ids (17-20 characters), debug ids and refundwatch's keys and UUIDs stay readable.
    (re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{40,}(?![A-Za-z0-9_\-])"), "[REDACTED]"),
    # 13-19 digits, optionally grouped by spaces or dashes, passing Luhn: card-number-like.
    (re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])"), _mask_card),
)

_CLIENT_TEXT = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces
# verify_webhook_signature.webhook_id (notifications_webhooks_v1.json): ^[a-zA-Z0-9]+$, at most 50.
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9]{1,50}")


class PayPalGateway:
    processor: str = "paypal"
    default_base_url: str = LIVE_BASE_URL
    secret_fields: tuple[str, ...] = ("client_secret",)
    option_fields: tuple[str, ...] = ("client_id", "webhook_id")
    optional_secret_fields: tuple[str, ...] = ()
    optional_option_fields: tuple[str, ...] = ("webhook_verification",)
    # COMPLETED, PENDING, FAILED are real statuses of the first answer; refunds are read by id.
    # Webhook signatures need the signing certificate (or PayPal's verify API): checked on the shared
    # client (verify_items_remote), not in the synchronous path.
    capabilities: Capabilities = Capabilities(
        reads_refunds=True, first_answer_final=True, refundable_queryable=False, verifies_remotely=True
    )
    # PayPal-Request-Id: "The server stores keys for 45 days" (payments_payment_v2.json parameters).
    idempotency_retention_seconds: float = 45 * 24 * 3600

    def __repr__(self) -> str:
        return "PayPalGateway()"

    # --- connection fields ----------------------------------------------------------------------------

    def check_fields(self, values: Mapping[str, str]) -> None:
        """Refuse malformed connection fields (ValueError with a one-line reason)."""
        client_id = values.get("client_id", "")
        if not _CLIENT_TEXT.fullmatch(client_id) or ":" in client_id:
            # A colon would split HTTP Basic's user from its password.
            raise ValueError("client_id must be 1-256 printable characters without spaces or ':'")
        if not _CLIENT_TEXT.fullmatch(values.get("client_secret", "")):
            raise ValueError("client_secret must be 1-256 printable characters without spaces")
        if not _WEBHOOK_ID.fullmatch(values.get("webhook_id", "")):
            raise ValueError("webhook_id must be 1-50 letters and digits (the app's Webhooks list shows it)")
        mode = values.get("webhook_verification")
        if mode is not None and mode not in WEBHOOK_VERIFICATION_MODES:
            raise ValueError("webhook_verification must be 'certificate' or 'api'")

    def check_amount(self, amount: int, currency: str) -> str | None:
        """Why PayPal cannot take this amount (HUF and TWD only in whole units), or None."""
        return tx.amount_refusal(amount, currency)

    @staticmethod
    def webhook_verification(creds: Credentials) -> str:
        """``certificate`` (default) or ``api``; any other stored value (check_fields refuses them on
        import and edit) reads as the default."""
        mode = creds.options.get("webhook_verification")
        return mode if mode in WEBHOOK_VERIFICATION_MODES else "certificate"

    # --- refunds --------------------------------------------------------------------------------------

    async def create_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult:
        try:
            body = tx.build_refund_body(request)
        except ValueError as exc:
            raise GatewayError(ErrorCode.INVALID_REQUEST, f"not sent to PayPal: {exc}") from None
        # Quoted so a capture id can never walk to another path.
        path = f"/v2/payments/captures/{quote(request.payment_reference, safe='')}/refund"
        headers = {"PayPal-Request-Id": request.idempotency_key, "Prefer": "return=representation"}
        response, exchange = await self._call(client, creds, "POST", path, body=body, headers=headers)
        refund = self._refund_from(response, exchange, reading=False)
        if refund.amount is None:
            # A minimal answer (Prefer ignored): read the refund to check what PayPal holds.
            refund, exchange = await self._read(client, creds, refund.id, after=exchange)
        mismatch = tx.refund_mismatch(refund, request)
        if mismatch is not None:
            # The refund may exist in a shape nobody asked for: a person must look, never a retry.
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH,
                self.scrub(f"{mismatch} (PayPal refund {refund.id})")[:_MESSAGE_CHARS],
                status_code=response.status_code,
                exchange=exchange,
            )
        return self._result(refund, exchange)

    async def get_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, gateway_refund_id: str
    ) -> RefundResult:
        if not gateway_refund_id:
            raise GatewayError(ErrorCode.INVALID_REQUEST, "no PayPal refund id to read")
        refund, exchange = await self._read(client, creds, gateway_refund_id)
        return self._result(refund, exchange)

    async def find_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult | None:
        """The attempt's refund, found in its capture's order: ``GET /v2/payments/captures/{id}`` names
        the order (``supplementary_data.related_ids.order_id``) and ``GET /v2/checkout/orders/{id}``
        lists the capture's refunds with their ``invoice_id``, the attempt's key. None only when that
        order, holding the capture, lists no refund of this attempt; a capture with no order (a
        payment not made through Orders v2) cannot tell (GatewayError)."""
        capture_id = request.payment_reference
        response, exchange = await self._call(
            client, creds, "GET", f"/v2/payments/captures/{quote(capture_id, safe='')}"
        )
        if not response.is_success:
            raise self._error(response, exchange, reading=True)
        order_id = tx.order_of(as_json(response))
        if order_id is None:
            raise GatewayError(ErrorCode.INVALID_REQUEST, NO_LOOKUP, exchange=exchange)
        response, exchange = await self._call(
            client, creds, "GET", f"/v2/checkout/orders/{quote(order_id, safe='')}"
        )
        if not response.is_success:
            raise self._error(response, exchange, reading=True)
        try:
            found = tx.order_refund(as_json(response), capture_id, request.idempotency_key)
        except tx.MalformedError as exc:
            raise self._unknown(response, exchange, f"an order it cannot read: {exc}") from None
        if found is None:
            return None
        if found.amount is None:  # listed without its details: read it
            return self._result(*await self._read(client, creds, found.id))
        return self._result(found, exchange)

    async def health_check(self, client: httpx2.AsyncClient, creds: Credentials) -> HealthResult:
        """``GET /v1/notifications/webhooks/{webhook_id}`` with the bearer: authenticated, light, and it
        proves the connection's webhook id exists. A failed token call fails the check too."""
        started = time.perf_counter()
        webhook_id = creds.options.get("webhook_id", "")
        if not webhook_id:
            return HealthResult(ok=False, latency_ms=0, error="no PayPal webhook_id is configured")
        try:
            path = f"/v1/notifications/webhooks/{quote(webhook_id, safe='')}"
            response, exchange = await self._call(client, creds, "GET", path)
            if response.is_success:
                return HealthResult(ok=True, latency_ms=exchange.latency_ms)
            error = self._error(response, exchange, reading=True)
            return HealthResult(ok=False, latency_ms=exchange.latency_ms, error=error.message)
        except GatewayError as exc:
            latency = exc.exchange.latency_ms if exc.exchange else calls.elapsed_ms(started)
            return HealthResult(ok=False, latency_ms=latency, error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a health probe reports, it never raises
            return HealthResult(ok=False, latency_ms=calls.elapsed_ms(started), error=type(exc).__name__)

    async def access_token(self, client: httpx2.AsyncClient, creds: Credentials) -> str:
        """The connection's bearer (cached, single flight), for online webhook verification."""
        return await auth.access_token(client, creds, self.scrub)

    # --- webhooks -------------------------------------------------------------------------------------

    def verify_webhook(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        raise WebhookVerificationError(REMOTE_VERIFICATION)

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        raise WebhookVerificationError(REMOTE_VERIFICATION)

    async def verify_items_remote(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float | None = None,
    ) -> list[WebhookItem]:
        """One event under one signature: all or nothing (gateways/paypal/verification.py)."""
        transmission_id = await verify_delivery(
            client, creds, headers, body, bearer=lambda: self.access_token(client, creds), now=now
        )
        # The signature covers the body through a CRC32 only: the core refuses this transmission id
        # seen again with another body for as long as the signature is acceptable.
        replay_seconds = verification.MAX_AGE_SECONDS + verification.MAX_FUTURE_SECONDS
        return [WebhookItem(body, replay_id=transmission_id, replay_seconds=replay_seconds)]

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
        """One timed API request with the bearer (401 → refresh once → retry, in ``auth``)."""
        url = creds.base_url.rstrip("/") + path

        async def send(token: str) -> tuple[httpx2.Response, Exchange]:
            sent = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
            return await calls.call(
                client,
                "PayPal",
                method,
                url,
                path,
                timeout_seconds=creds.timeout_seconds,
                headers=sent,
                scrub=self.scrub,
                json=body,
            )

        return await auth.authorized(client, creds, self.scrub, send)

    async def _read(
        self, client: httpx2.AsyncClient, creds: Credentials, refund_id: str, *, after: Exchange | None = None
    ) -> tuple[tx.PayPalRefund, Exchange]:
        path = f"/v2/payments/refunds/{quote(refund_id, safe='')}"
        response, exchange = await self._call(client, creds, "GET", path)
        refund = self._refund_from(response, exchange, reading=True)
        if refund.amount is None:
            raise self._unknown(response, exchange, "a refund without an amount")
        return refund, exchange

    def _refund_from(
        self, response: httpx2.Response, exchange: Exchange, *, reading: bool
    ) -> tx.PayPalRefund:
        if not response.is_success:
            raise self._error(response, exchange, reading=reading)
        try:
            return tx.parse_refund(json.loads(response.content))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            # A 2xx is no refusal: the refund may exist.
            raise self._unknown(response, exchange, f"a malformed refund: {reason}") from None

    def _unknown(self, response: httpx2.Response, exchange: Exchange, what: str) -> GatewayError:
        return calls.outcome_unknown("PayPal", response, exchange, what, self.scrub)

    def _error(self, response: httpx2.Response, exchange: Exchange, *, reading: bool) -> GatewayError:
        error = errors.parse_error(as_json(response))
        code = errors.map_error(response.status_code, error, reading=reading)
        detail = error.detail or response.reason_phrase or "no message"
        debug = f" [debug_id {error.debug_id}]" if error.debug_id else ""
        return GatewayError(
            code,
            self.scrub(f"PayPal answered {response.status_code} ({error.label}): {detail}{debug}")[
                :_MESSAGE_CHARS
            ],
            processor_code=error.issues[0] if error.issues else (error.name or error.oauth_error),
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
            exchange=exchange,
        )

    @staticmethod
    def _result(refund: tx.PayPalRefund, exchange: Exchange) -> RefundResult:
        status = tx.map_status(refund.status)
        failure_code, failure_message = tx.failure_details(refund, status)
        return RefundResult(
            status=status,
            gateway_refund_id=refund.id,
            raw_status=refund.raw_status,
            amount=refund.amount,
            currency=refund.currency,
            failure_code=failure_code,
            failure_message=failure_message,
            processor_code=refund.reason if failure_code else None,
            exchange=exchange,
            idempotency_key=refund.invoice_id,
        )
