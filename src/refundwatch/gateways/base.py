"""The gateway layer's contract: one protocol, one result type, one error vocabulary.

Adapters are stateless (STYLE rule 1): they build requests, parse responses, verify and parse webhooks
and scrub secrets. They never touch the database or Redis; the refunds core persists everything.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2

from refundwatch.lib.crypto import Secret


class GatewayStatus(enum.StrEnum):
    """Where the processor says a refund is. Unknown or ambiguous maps to PENDING, never SUCCEEDED."""

    PENDING = "pending"  # accepted, final outcome still to come
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REVERSED = "reversed"  # had succeeded, later failed or reversed
    REQUIRES_ACTION = "requires_action"  # a person must act (maps to manual_review)


class ErrorCode(enum.StrEnum):
    """The standard error vocabulary every adapter maps its processor's codes into."""

    AMOUNT_EXCEEDS_REFUNDABLE = "amount_exceeds_refundable"
    ALREADY_REFUNDED = "already_refunded"
    PAYMENT_NOT_FOUND = "payment_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID_REQUEST = "invalid_request"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    DECLINED = "declined"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    RESPONSE_MISMATCH = "response_mismatch"  # processor reported a different amount/currency
    PROCESSOR_ERROR = "processor_error"
    # The request went out and the answer cannot be trusted or read (an unreadable or undecodable 2xx
    # body, a 2xx that is not a refund): the refund may exist.
    OUTCOME_UNKNOWN = "outcome_unknown"


# Codes whose outcome is unknown or temporary: retry with the same idempotency key.
RETRYABLE_CODES = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.GATEWAY_UNAVAILABLE,
        ErrorCode.TIMEOUT,
        ErrorCode.CONNECTION_ERROR,
        ErrorCode.IDEMPOTENCY_CONFLICT,  # e.g. the same key is still being processed
    }
)

# The request may have been executed: never failed, settle by looking the refund up (find_refund).
# A 5xx after the body went out is GATEWAY_UNAVAILABLE, and just as unknown.
UNKNOWN_OUTCOME_CODES = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.CONNECTION_ERROR,
        ErrorCode.OUTCOME_UNKNOWN,
        ErrorCode.GATEWAY_UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A connection's decrypted settings. Secret values are wrapped so they never print."""

    connection_name: str
    processor: str
    base_url: str
    secrets: Mapping[str, Secret]
    options: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 30.0

    def secret(self, name: str) -> str:
        return self.secrets[name].reveal()


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # refundwatch's id, sent as metadata so webhooks can find the refund
    payment_reference: str
    amount: int  # minor units
    currency: str  # ISO 4217, upper case
    reason: str  # refundwatch reason: requested_by_customer, duplicate, fraudulent, return, other
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP exchange with the processor, scrubbed, for the refund's timeline."""

    method: str
    path: str
    status_code: int | None
    latency_ms: int
    excerpt: str


def exchange_json(exchange: Exchange | None) -> str | None:
    """How an exchange is kept on the refund's timeline (refund_events.exchange)."""
    if exchange is None:
        return None
    return json.dumps(
        {
            "method": exchange.method,
            "path": exchange.path,
            "status_code": exchange.status_code,
            "latency_ms": exchange.latency_ms,
            "excerpt": exchange.excerpt,
        }
    )


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: GatewayStatus
    gateway_refund_id: str | None
    raw_status: str  # the processor's own status word, for the timeline
    amount: int | None = None
    currency: str | None = None
    failure_code: ErrorCode | None = None
    failure_message: str | None = None
    processor_code: str | None = None
    exchange: Exchange | None = None
    idempotency_key: str | None = None  # the key the processor echoed (metadata), when it does


class GatewayError(Exception):
    """A call did not produce a result. ``retryable`` means the outcome is unknown or temporary."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        processor_code: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.processor_code = processor_code
        self.status_code = status_code
        self.retry_after = retry_after
        self.exchange = exchange

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    @property
    def outcome_unknown(self) -> bool:
        """The request may have been executed: never mark the refund failed, look it up instead."""
        return self.code in UNKNOWN_OUTCOME_CODES


class WebhookVerificationError(Exception):
    """Signature missing, malformed, stale or wrong. The message is safe to show."""


class WebhookVerificationUnavailable(WebhookVerificationError):
    """No verdict: what the check needs (a signing certificate, the processor's verification API)
    did not answer, or answered that it cannot now. Nothing is said about the delivery itself, so it
    is not counted against its sender; the processor re-sends it."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified notification, reduced to what the refunds core needs."""

    event_id: str  # unique per connection: the dedupe key
    event_type: str
    gateway_refund_id: str | None
    refund_id: str | None  # refundwatch id from metadata, when the processor echoes it
    status: GatewayStatus | None  # None: the event does not change a refund's status
    raw_status: str | None = None
    amount: int | None = None
    currency: str | None = None
    failure_code: ErrorCode | None = None
    failure_message: str | None = None
    processor_code: str | None = None
    # The idempotency key of the attempt that created the refund, when the processor echoes it: with
    # gateway_refund_id it tells which attempt of a refund the event is about.
    idempotency_key: str | None = None
    # Settlement data the processor says is ready (Stripe's paid payout id, Adyen's report URL): the
    # worker pulls it (reconciliation.pulling).
    settlement_ref: str | None = None


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    latency_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a processor allows. The core (execution, sync, sweeper, webhooks) decides from these
    declarations, never from a processor's name."""

    # get_refund / find_refund work: an unknown outcome can be settled by asking, sync can poll.
    reads_refunds: bool = True
    # False: the create answer only acknowledges receipt (Adyen "received"): the refund is processing
    # and its outcome comes from a notification.
    first_answer_final: bool = True
    # The processor can report what is still refundable on a payment: the gateway has
    # ``async refundable(client, creds, payment_reference) -> tuple[int, str] | None`` (minor units and
    # currency, None when the payment does not say), and refunds.execution checks it before a key's
    # first send, refusing (never sending) a refund above what the processor says is left.
    refundable_queryable: bool = False
    # False: the processor's idempotency keeps only successful answers (Checkout.com caches 2xx only), so
    # a re-send after a 5xx, a timeout or a request still in flight may execute again. The core then never
    # re-sends an attempt whose outcome is unknown without the processor's word that it does not exist
    # (find_refund answering None), however recent the key (refunds.lookup, refunds.execution).
    idempotency_covers_errors: bool = True
    # The exact body the processor expects as the webhook answer (Adyen: "[accepted]"); None: JSON.
    webhook_ack: str | None = None
    # Webhook verification needs requests (PayPal: the signing certificate, or its verification API):
    # the core calls the async verify_items_remote with the shared HTTP client, under a deadline,
    # instead of verify_items.
    verifies_remotely: bool = False


@dataclass(frozen=True, slots=True)
class WebhookItem:
    """One item of a webhook delivery, verified on its own (Adyen signs each notification item)."""

    payload: bytes  # what is stored and later handed to parse_webhook
    error: str | None = None  # why this item is refused (bad or missing signature); None: verified
    # Where the signature covers the body only weakly (PayPal signs a CRC32 of it, which can be
    # forged): the delivery's signed id and how long its signature stays acceptable. The core refuses
    # the id seen again with another body (webhooks.replays).
    replay_id: str | None = None
    replay_seconds: float = 0.0


class Gateway(Protocol):
    """What every processor package provides (see gateways/registry.py).

    Optional, looked up with ``getattr`` so a package without them keeps working:
    ``check_fields(values)`` (raise ValueError for a malformed connection field, connections/spec.py)
    and ``check_amount(amount, currency) -> str | None`` (why the processor cannot take this amount,
    e.g. PayPal takes HUF only in whole units; refunds/intake.py refuses it before anything is stored,
    see :func:`amount_refusal`), ``get_payment_refund(client, creds, payment_reference, gateway_refund_id)``
    (see :func:`read_refund`) and ``refundable(client, creds, payment_reference)`` (see
    Capabilities.refundable_queryable).
    """

    processor: str
    default_base_url: str
    secret_fields: tuple[str, ...]  # credential names from the connections file that are secrets
    option_fields: tuple[str, ...]  # non-secret required fields (e.g. merchant_account)
    # How long the processor remembers an idempotency key; past it a re-send may execute again.
    idempotency_retention_seconds: float
    capabilities: Capabilities

    async def create_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult: ...

    async def get_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, gateway_refund_id: str
    ) -> RefundResult: ...

    async def find_refund(
        self, client: httpx2.AsyncClient, creds: Credentials, request: RefundRequest
    ) -> RefundResult | None:
        """The refund that this request (this idempotency key) created at the processor, or None when
        the processor confirms none exists. Raises GatewayError when it cannot tell (unreachable,
        unreadable).

        It matches the attempt, not only refundwatch's refund id: one refund can have several processor
        refunds over its life (re_1 failed, retried with a new key: re_2).
        """

    async def health_check(self, client: httpx2.AsyncClient, creds: Credentials) -> HealthResult: ...

    def verify_webhook(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        """Raise WebhookVerificationError unless the body carries a valid signature."""

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        """Raise WebhookVerificationError when the whole delivery is refused (authentication, not
        parseable); otherwise one WebhookItem per item, each verified on its own."""

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]: ...

    def scrub(self, text: str) -> str:
        """Mask every credential, token and card-like value in a log line or body excerpt."""


# An adapter's masking rules: each pattern's matches replaced in turn (see Gateway.scrub).
ScrubRules = tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]


def apply_scrub_rules(rules: ScrubRules, text: str) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


async def read_refund(
    gateway: Gateway,
    client: httpx2.AsyncClient,
    creds: Credentials,
    gateway_refund_id: str,
    *,
    payment_reference: str,
) -> RefundResult:
    """``gateway.get_refund``, or, for a processor that reads a refund only through its payment
    (Checkout.com lists a payment's actions; an action id alone cannot be read), its optional
    ``get_payment_refund(client, creds, payment_reference, gateway_refund_id)``."""
    through_payment = getattr(gateway, "get_payment_refund", None)
    if through_payment is None:
        return await gateway.get_refund(client, creds, gateway_refund_id)
    result: RefundResult = await through_payment(client, creds, payment_reference, gateway_refund_id)
    return result


def amount_refusal(gateway: object, amount: int, currency: str) -> str | None:
    """Why ``gateway``'s processor cannot take ``amount`` minor units of ``currency`` as they are, or None
    (also for a gateway without ``check_amount``, e.g. Adyen, which takes every amount)."""
    check = getattr(gateway, "check_amount", None)
    if check is None:
        return None
    refusal = check(amount, currency)
    return refusal if isinstance(refusal, str) and refusal else None


class RemoteVerifier(Protocol):
    """What a gateway whose webhook verification needs requests adds (Capabilities.verifies_remotely:
    PayPal's signing certificate, or its verification API). The others are verified with
    ``verify_items`` alone."""

    async def verify_items_remote(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float | None = None,
    ) -> list[WebhookItem]:
        """verify_items, on the shared client. Same results and errors: raise WebhookVerificationError
        (a safe message) when the delivery is refused, including when what it needs cannot be
        reached, never accept then."""


def as_json(response: httpx2.Response) -> dict[str, Any]:
    """The response body as a JSON object, or {} when it is not one (never raises)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
