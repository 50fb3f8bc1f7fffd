"""In-memory state shared by every processor: payments, refunds, the ledger, idempotency, timers.

Refund statuses here are the simulator's own, generic ones (``pending``, ``succeeded``, ``failed``,
``canceled``, ``reversed``); each processor package renders them in its own vocabulary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNTING_STATUSES",
    "Payment",
    "PaymentConflictError",
    "Refund",
    "SavedResponse",
    "Store",
]

# Refunds in these statuses hold part of the payment's balance; failed, canceled, reversed ones released it.
COUNTING_STATUSES = frozenset({"pending", "succeeded"})

StatusListener = Callable[["Refund", str], None]


class PaymentConflictError(ValueError):
    """A payment with this reference exists with different data."""


@dataclass(slots=True)
class Payment:
    processor: str
    reference: str
    amount: int
    currency: str  # ISO 4217, upper case
    created: int
    refunds: list[Refund] = field(default_factory=list)
    refunded: int = 0  # held by pending and succeeded refunds, kept up to date by the Store
    # When the capture settles (epoch seconds): where a processor refunds only settled transactions,
    # before it a refund is refused (CONTRACT §7 ``settle_after_seconds``; the others ignore it).
    settles_at: float = 0.0

    def refundable(self) -> int:
        return self.amount - self.refunded

    def as_dict(self) -> dict[str, Any]:
        refunded = self.refunded
        return {
            "processor": self.processor,
            "payment_reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "refunded": refunded,
            "refundable": self.amount - refunded,
        }


@dataclass(slots=True)
class Refund:
    id: str
    processor: str
    payment: Payment
    amount: int
    currency: str  # ISO 4217, upper case
    status: str
    created: int
    credential: str  # the API credential that created it (routes its webhooks)
    idempotency_key: str | None = None
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    failure_reason: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # processor-specific wire fields
    # When money moved (first ``succeeded``), and when a succeeded refund was failed or reversed after
    # all (Unix seconds): what the settlement reports are made of.
    succeeded_at: int | None = None
    undone_at: int | None = None

    def ledger_row(self) -> dict[str, Any]:
        return {
            "processor": self.processor,
            "payment_reference": self.payment.reference,
            "gateway_refund_id": self.id,
            "idempotency_key": self.idempotency_key,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class SavedResponse:
    """What an executed request answered, kept for idempotent replays."""

    fingerprint: Hashable
    endpoint: str
    status: int
    body: bytes
    request_id: str
    saved_at: float = field(default_factory=time.monotonic)


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Store:
    """All simulator state. One instance per app; single event loop, so no thread locking."""

    def __init__(self) -> None:
        self.payments: dict[tuple[str, str], Payment] = {}
        self.aliases: dict[tuple[str, str], Payment] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.ledger: list[Refund] = []
        self.idempotency: dict[tuple[str, str, str], SavedResponse] = {}
        self._key_locks: dict[tuple[str, str, str], _KeyLock] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._listeners: dict[str, StatusListener] = {}
        self._alias_makers: dict[str, Callable[[str], list[str]]] = {}

    # -- payments ---------------------------------------------------------------------------------
    def register_alias_maker(self, processor: str, maker: Callable[[str], list[str]]) -> None:
        """Let a processor give payments extra ids (e.g. Stripe: the charge of a payment intent)."""
        self._alias_makers[processor] = maker

    def register_payment(
        self, processor: str, reference: str, amount: int, currency: str, settle_after_seconds: float = 0.0
    ) -> Payment:
        currency = currency.upper()
        existing = self.payments.get((processor, reference))
        if existing is not None:
            if existing.amount != amount or existing.currency != currency:
                raise PaymentConflictError(
                    f"payment {reference!r} of {processor} exists with amount {existing.amount} "
                    f"{existing.currency}"
                )
            return existing
        now = time.time()
        payment = Payment(
            processor, reference, amount, currency, int(now), settles_at=now + settle_after_seconds
        )
        self.payments[(processor, reference)] = payment
        maker = self._alias_makers.get(processor)
        if maker is not None:
            for alias in maker(reference):
                self.aliases[(processor, alias)] = payment
        return payment

    def find_payment(self, processor: str, reference: str) -> Payment | None:
        return self.payments.get((processor, reference)) or self.aliases.get((processor, reference))

    # -- refunds and ledger -----------------------------------------------------------------------
    def add_refund(self, refund: Refund) -> None:
        """Record an executed refund: one ledger row."""
        self.refunds[(refund.processor, refund.id)] = refund
        refund.payment.refunds.append(refund)
        if refund.status == "succeeded" and refund.succeeded_at is None:
            refund.succeeded_at = refund.created
        if refund.status in COUNTING_STATUSES:
            refund.payment.refunded += refund.amount
        self.ledger.append(refund)

    def get_refund(self, processor: str, refund_id: str) -> Refund | None:
        return self.refunds.get((processor, refund_id))

    def ledger_rows(self, processor: str | None = None) -> list[dict[str, Any]]:
        return [r.ledger_row() for r in self.ledger if processor is None or r.processor == processor]

    def on_status_change(self, processor: str, listener: StatusListener) -> None:
        """``listener(refund, old_status)`` runs after each status change of the processor's refunds."""
        self._listeners[processor] = listener

    def set_status(self, refund: Refund, status: str, failure_reason: str | None = None) -> None:
        old = refund.status
        if old == status:
            return
        refund.status = status
        if status == "succeeded" and refund.succeeded_at is None:
            refund.succeeded_at = int(time.time())
        elif old == "succeeded" and status in {"failed", "reversed"}:
            refund.undone_at = int(time.time())
        was_held, held = old in COUNTING_STATUSES, status in COUNTING_STATUSES
        if was_held != held:
            refund.payment.refunded += refund.amount if held else -refund.amount
        if failure_reason is not None:
            refund.failure_reason = failure_reason
        listener = self._listeners.get(refund.processor)
        if listener is not None:
            listener(refund, old)

    # -- timers (settling, flips) -----------------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds unless the store is reset first."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback()

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    # -- idempotency ------------------------------------------------------------------------------
    @asynccontextmanager
    async def key_lock(self, key: tuple[str, str, str]) -> AsyncIterator[None]:
        """Serialize requests that share one idempotency key (processor, credential, key)."""
        entry = self._key_locks.get(key)
        if entry is None:
            entry = self._key_locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._key_locks.get(key) is entry:
                del self._key_locks[key]

    def saved_response(self, key: tuple[str, str, str], *, max_age: float) -> SavedResponse | None:
        """The answer saved under ``key``, unless it is ``max_age`` seconds old or older: the processor
        has forgotten that key, and the same key executes again (a new refund)."""
        saved = self.idempotency.get(key)
        if saved is not None and time.monotonic() - saved.saved_at >= max_age:
            del self.idempotency[key]
            return None
        return saved

    def save_response(self, key: tuple[str, str, str], saved: SavedResponse) -> None:
        self.idempotency[key] = saved

    # -- reset ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget payments, refunds, ledger, idempotency and pending timers (requests in flight finish)."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.payments.clear()
        self.aliases.clear()
        self.refunds.clear()
        self.ledger.clear()
        self.idempotency.clear()
