"""The Stripe adapter: refunds through ``/v1/refunds``, webhooks signed with ``Stripe-Signature``.

Stateless (STYLE rule 1): it builds requests, reads answers through the tables in ``transformers``,
verifies and parses webhooks and scrubs secrets. Persistence and retries belong to the refunds core.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode

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
from refundwatch.gateways.retry_after import parse_retry_after
from refundwatch.gateways.stripe import lookup
from refundwatch.gateways.stripe import transformers as tx
from refundwatch.gateways.stripe.transformers import STRIPE_API_VERSION
from refundwatch.lib.crypto import constant_time_equals
from refundwatch.lib.money import format_money

__all__ = ["STRIPE_API_VERSION", "WEBHOOK_TOLERANCE_SECONDS", "StripeGateway"]

WEBHOOK_TOLERANCE_SECONDS = 300  # the SDK's Webhook.DEFAULT_TOLERANCE

_MESSAGE_CHARS = calls.MESSAGE_CHARS
# The api_key goes into the Authorization header: printable ASCII without spaces, or httpx2 cannot send it.
_HEADER_TOKEN = re.compile(r"[!-~]+")


def _mask_key(match: re.Match[str]) -> str:
    kind, mode = match.group(1), match.group(2)
    return f"{kind}_{mode}_****" if mode else f"{kind}_****"


_SCRUB_RULES: ScrubRules = (
    # Secret and restricted API keys, including Stripe's own partly masked echoes of them.
    (re.compile(r"(?<![A-Za-z0-9])(sk|rk)_(?:(live|test)_)?[A-Za-z0-9*]+"), _mask_key),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=*]+"), "whsec_****"),
    (re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"), "Bearer [REDACTED]"),
    # 13-19 digits, optionally grouped by spaces or dashes: card-number-like.
    (re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"), "[REDACTED]"),
)


class StripeGateway:
    processor: str = "stripe"
    default_base_url: str = "https://api.stripe.com"
    secret_fields: tuple[str, ...] = ("api_key", "webhook_secret")
    option_fields: tuple[str, ...] = ()
    capabilities: Capabilities = Capabilities()
    # Stripe removes idempotency keys after at least 24 hours (GATEWAYS.md; Stripe's API reference,
    # "Idempotent requests"): past that a re-send with the same key may execute a second refund.
    idempotency_retention_seconds: float = 24 * 3600

    def check_fields(self, values: Mapping[str, str]) -> None:
        """Refuse malformed connection fields (ValueError with a one-line reason, never the secret)."""
        if not _HEADER_TOKEN.fullmatch(values.get("api_key", "")):
            raise ValueError("api_key must be printable ASCII characters without spaces")

    def check_amount(self, amount: int, currency: str) -> str | None:
        """Why Stripe cannot take this amount (a three-decimal currency's must end in 0; MGA is
        zero-decimal there), or None: intake refuses it before anything is reserved or sent."""
        try:
            tx.to_stripe_amount(amount, currency)
        except ValueError as exc:
            return f"Stripe cannot take {format_money(amount, currency.upper())}: {exc}"
        return None

    # --- refunds --------------------------------------------------------------------------------------

    async def create_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult:
        try:
            form = tx.build_refund_form(request)
        except ValueError as exc:
            raise GatewayError(ErrorCode.INVALID_REQUEST, f"not sent to Stripe: {exc}") from None
        response, exchange = await self._call(
            client, creds, "POST", "/v1/refunds", data=form, idempotency_key=request.idempotency_key
        )
        refund = self._refund_from(response, exchange, payment_lookup=True)
        self._check(refund, request, response, exchange)
        return self._result(refund, exchange)

    async def get_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, gateway_refund_id: str
    ) -> RefundResult:
        if not gateway_refund_id:
            raise GatewayError(ErrorCode.INVALID_REQUEST, "no Stripe refund id to read")
        # Quoted so an id can never walk to another path (``../balance``).
        path = f"/v1/refunds/{quote(gateway_refund_id, safe='')}"
        response, exchange = await self._call(client, creds, "GET", path)
        return self._result(self._refund_from(response, exchange, payment_lookup=False), exchange)

    async def find_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult | None:
        """This attempt's refund among the payment's refunds (matching rule: ``lookup``'s docstring)."""
        if not request.payment_reference:
            raise GatewayError(ErrorCode.INVALID_REQUEST, "no payment reference to look refunds up on")
        refunds: list[tx.StripeRefund] = []
        starting_after: str | None = None
        for _ in range(lookup.MAX_PAGES):
            path = "/v1/refunds?" + urlencode(lookup.list_query(request, starting_after))
            response, exchange = await self._call(client, creds, "GET", path)
            if not response.is_success:
                raise self._error(response, exchange, payment_lookup=True)
            try:
                page = lookup.parse_page(json.loads(response.content))
            except (ValueError, RecursionError) as exc:
                reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
                raise self._unknown(response, exchange, f"an unreadable refund list: {reason}") from None
            refunds.extend(page.refunds)
            if not page.has_more:
                break
            starting_after = page.refunds[-1].id
        else:
            message = f"more than {lookup.MAX_PAGES * lookup.PAGE_LIMIT} refunds on this payment"
            raise self._unknown(response, exchange, message)
        try:
            refund = lookup.match_attempt(refunds, request)
        except lookup.AmbiguousLookupError as exc:
            # Possibly paid twice, or not attributable: a person must look, never a re-send.
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH, self.scrub(str(exc))[:_MESSAGE_CHARS], exchange=exchange
            ) from None
        if refund is None:
            return None
        self._check(refund, request, response, exchange)
        return self._result(refund, exchange)

    async def health_check(self, client: httpx2.AsyncClient, creds: Credentials) -> HealthResult:
        started = time.perf_counter()
        try:
            response, exchange = await self._call(client, creds, "GET", "/v1/balance")
            if response.is_success:
                return HealthResult(ok=True, latency_ms=exchange.latency_ms)
            error = self._error(response, exchange, payment_lookup=False)
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
        secret = creds.secrets.get("webhook_secret")
        if secret is None or not secret.reveal():
            raise WebhookVerificationError("no Stripe webhook secret is configured")
        values = [value for name, value in headers.items() if name.lower() == "stripe-signature"]
        if not values or not values[0].strip():
            raise WebhookVerificationError("missing Stripe-Signature header")
        if len(values) > 1:
            raise WebhookVerificationError("more than one Stripe-Signature header")
        timestamp, signatures = _parse_signature_header(values[0])
        signed = f"{timestamp}.".encode() + body
        expected = hmac.new(secret.reveal().encode("utf-8"), signed, hashlib.sha256).hexdigest()
        matched = False
        for candidate in signatures:  # every v1 is compared: during secret rotation any may be ours
            matched |= constant_time_equals(expected, candidate)
        if not matched:
            raise WebhookVerificationError("Stripe-Signature does not match the body")
        current = time.time() if now is None else now
        if abs(current - timestamp) > WEBHOOK_TOLERANCE_SECONDS:
            raise WebhookVerificationError("Stripe-Signature timestamp is outside the 300 s tolerance")

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        """A Stripe delivery is one event under one signature: all or nothing."""
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
        data: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[httpx2.Response, Exchange]:
        """One timed request. Every httpx2 failure becomes a GatewayError carrying an Exchange."""
        api_key = creds.secrets.get("api_key")
        if api_key is None or not api_key.reveal():
            raise GatewayError(ErrorCode.AUTH_FAILED, "no Stripe api_key is configured")
        headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
            "Stripe-Version": STRIPE_API_VERSION,
            "Accept": "application/json",
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = creds.base_url.rstrip("/") + path
        return await calls.call(
            client,
            "Stripe",
            method,
            url,
            path,
            timeout_seconds=creds.timeout_seconds,
            headers=headers,
            scrub=self.scrub,
            data=data,
        )

    def _refund_from(
        self, response: httpx2.Response, exchange: Exchange, *, payment_lookup: bool
    ) -> tx.StripeRefund:
        if not response.is_success:
            raise self._error(response, exchange, payment_lookup=payment_lookup)
        try:
            return tx.parse_refund(json.loads(response.content))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            # A 2xx is no refusal: the refund may exist, and only a lookup settles it.
            raise self._unknown(response, exchange, f"a malformed refund: {reason}") from None

    def _unknown(self, response: httpx2.Response, exchange: Exchange, what: str) -> GatewayError:
        return calls.outcome_unknown("Stripe", response, exchange, what, self.scrub)

    def _check(
        self, refund: tx.StripeRefund, request: RefundRequest, response: httpx2.Response, exchange: Exchange
    ) -> None:
        mismatch = tx.refund_mismatch(refund, request)
        if mismatch is not None:
            # The refund may exist in a shape nobody asked for: a person must look, never a retry.
            raise GatewayError(
                ErrorCode.RESPONSE_MISMATCH,
                self.scrub(f"{mismatch} (Stripe refund {refund.id})"),
                status_code=response.status_code,
                exchange=exchange,
            )

    def _error(self, response: httpx2.Response, exchange: Exchange, *, payment_lookup: bool) -> GatewayError:
        error = tx.parse_error(as_json(response))
        code = tx.map_error(response.status_code, error, payment_lookup=payment_lookup)
        detail = error.message or response.reason_phrase or "no message"
        label = "/".join(filter(None, (error.code, error.decline_code))) or error.type or "http"
        return GatewayError(
            code,
            self.scrub(f"Stripe answered {response.status_code} ({label}): {detail}")[:_MESSAGE_CHARS],
            processor_code=error.code or error.type,
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
            exchange=exchange,
        )

    @staticmethod
    def _result(refund: tx.StripeRefund, exchange: Exchange) -> RefundResult:
        status = tx.map_status(refund.status)
        failure_code, failure_message = tx.failure_details(refund, status)
        return RefundResult(
            status=status,
            gateway_refund_id=refund.id,
            raw_status=refund.status,
            amount=refund.minor_amount,
            currency=refund.currency,
            failure_code=failure_code,
            failure_message=failure_message,
            processor_code=refund.failure_reason if failure_code else None,
            exchange=exchange,
            idempotency_key=refund.metadata.get(tx.METADATA_IDEMPOTENCY_KEY),
        )


def _parse_signature_header(value: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=...]`` -> (t, v1 values). Other schemes (v0) are ignored, as the SDK does."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(val.strip())
        elif key == "v1":
            signatures.append(val.strip())
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise WebhookVerificationError("malformed Stripe-Signature header: needs one numeric t")
    if len(timestamps[0]) > 12:
        raise WebhookVerificationError("malformed Stripe-Signature header: t is not a unix time")
    if not signatures:
        raise WebhookVerificationError("Stripe-Signature header has no v1 signature")
    return int(timestamps[0]), signatures
