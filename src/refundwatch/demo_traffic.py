"""Demo traffic: refunds through the real HTTP API, against a simulator that misbehaves a little.

Everything goes through the public surface (CONTRACT §4 and §7), as a returns system would use it, so
the demo shows the same behaviour users get: idempotent retries, over-refund rejections, slow and
failing gateway calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2

__all__ = ["REASONS", "DemoPayment", "DemoTraffic", "PlannedRefund", "TrafficStats"]

REASONS = ("requested_by_customer", "duplicate", "fraudulent", "return", "other")
_REASON_WEIGHTS = (50, 8, 4, 33, 5)  # mostly customers and returns, as in real refund traffic

# Realistic trouble: slow answers, a few errors and timeouts, refunds that settle later or fail later.
# Only the fields the running simulator accepts are sent (it rejects unknown ones).
DEMO_FAULTS: dict[str, float] = {
    "latency_ms": 120,
    "jitter_ms": 80,
    "error_rate": 0.03,
    "timeout_rate": 0.01,
    "reset_rate": 0.005,
    "pending_rate": 0.2,
    "fail_later_rate": 0.02,
    "settle_ms": 3000,
    "timeout_ms": 15000,
    "webhook_duplicate_rate": 0.02,
}
# PayPal's own life on top: about a quarter of its refunds answer PENDING (an eCheck refund, reason
# ECHECK) and settle some seconds later, announced by a webhook, so pending refunds show on the
# dashboard and then complete (or, fail_later_rate of them, fail).
PAYPAL_FAULTS: dict[str, float] = {**DEMO_FAULTS, "pending_rate": 0.25, "settle_ms": 8000}
# Checkout.com's: every refund is only accepted (202, processing) and its outcome comes in a signed
# webhook settle_ms later; a quarter announce payment_refund_pending first, and more of them than
# elsewhere are declined (payment_refund_declined), so declines show. Half of its injected 5xx answers
# come after the refund executed, as Checkout.com's may: refundwatch finds those in the payment's actions
# rather than sending them twice.
CHECKOUT_FAULTS: dict[str, float] = {
    **DEMO_FAULTS,
    "pending_rate": 0.25,
    "fail_later_rate": 0.08,
    "settle_ms": 4000,
    "executed_error_share": 0.5,
}
# The processors whose faults the demo sets (Adyen keeps the simulator's defaults).
FAULTS_BY_PROCESSOR: dict[str, dict[str, float]] = {
    "stripe": DEMO_FAULTS,
    "paypal": PAYPAL_FAULTS,
    "checkout": CHECKOUT_FAULTS,
}
_CONTRACT_FAULT_FIELDS = frozenset({"latency_ms", "jitter_ms", "error_rate", "timeout_rate", "reset_rate"})

_MIN_REFUND = 100
_LOW_WATER = 25  # fewer refundable payments than this: register a new batch
_TOP_UP = 40
_MAX_IN_FLIGHT = 20
_CONCURRENCY = 16


@dataclass(slots=True)
class DemoPayment:
    connection: str
    reference: str
    amount: int
    currency: str
    captured_at: dt.datetime
    order_id: str
    refundable: int  # our conservative view: decremented as refunds are requested
    processor: str = "stripe"

    def api_body(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "payment_reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "captured_at": self.captured_at.isoformat(),
            "order_id": self.order_id,
        }

    def simulator_body(self) -> dict[str, Any]:
        return {
            "processor": self.processor,
            "payment_reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class PlannedRefund:
    payment: DemoPayment
    amount: int
    reason: str
    idempotency_key: str
    expect_rejection: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "payment_reference": self.payment.reference,
            "connection": self.payment.connection,
            "amount": self.amount,
            "currency": self.payment.currency,
            "reason": self.reason,
            "order_id": self.payment.order_id,
            "metadata": {"source": "refundwatch-demo"},
        }


@dataclass(slots=True)
class TrafficStats:
    sent: int = 0
    created: int = 0
    replayed: int = 0
    rejected: int = 0
    errors: int = 0

    def line(self) -> str:
        return (
            f"traffic: {self.sent} requests, {self.created} refunds created, {self.replayed} idempotent "
            f"replays, {self.rejected} rejected (422), {self.errors} errors"
        )


class DemoTraffic:
    """Registers demo payments and keeps refunds flowing, ``rate`` requests per second on average."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        *,
        api_url: str,
        api_key: str,
        simulator_url: str,
        currencies: dict[str, str],
        approval_threshold: Callable[[str], int],
        first_number: int = 1,
        rate: tuple[float, float] = (2.0, 5.0),
        seed: int | None = None,
    ) -> None:
        self._client = client
        self._api = api_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._sim = simulator_url.rstrip("/")
        self._currencies = currencies  # connection name -> currency
        self._threshold = approval_threshold
        self._next_number = first_number
        self._rate = rate
        self._rng = random.Random(seed)
        self._pool: list[DemoPayment] = []
        self._recent: deque[PlannedRefund] = deque(maxlen=50)
        self._in_flight = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = TrafficStats()

    # ------------------------------------------------------------------------------------ simulator

    async def configure_simulator(self) -> dict[str, dict[str, Any]]:
        """Turn on FAULTS_BY_PROCESSOR for Stripe and for the demo's other processors that have them;
        returns what was sent, by processor."""
        current = await self._client.get(f"{self._sim}/_control/faults")
        snapshot = current.json() if current.status_code == 200 else {}
        used = {connection.split("-", 1)[0] for connection in self._currencies} | {"stripe"}
        sent: dict[str, dict[str, Any]] = {}
        for processor, faults in FAULTS_BY_PROCESSOR.items():
            if processor not in used:
                continue
            accepted: set[str] = set(_CONTRACT_FAULT_FIELDS)
            known = snapshot.get(processor) if isinstance(snapshot, dict) else None
            if isinstance(known, dict) and known:
                accepted = set(known)
            body: dict[str, Any] = {"processor": processor}
            body.update({k: v for k, v in faults.items() if k in accepted})
            answer = await self._client.post(f"{self._sim}/_control/faults", json=body)
            if answer.status_code >= 400:
                raise RuntimeError(
                    f"simulator refused the {processor} fault settings ({answer.status_code}): "
                    f"{answer.text[:200]}"
                )
            sent[processor] = body
        return sent

    # ------------------------------------------------------------------------------------- payments

    def new_payments(self, count: int) -> list[DemoPayment]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        names = sorted(self._currencies)
        made = []
        for _ in range(count):
            number = self._next_number
            self._next_number += 1
            connection = names[number % len(names)]
            # Mostly small baskets, a few large orders: 10.00 to 2,000.00, often ending in .99.
            units = int(self._rng.triangular(10, 2000, 60))
            amount = units * 100 - (1 if units > 10 and self._rng.random() < 0.5 else 0)
            processor = connection.split("-", 1)[0]
            # Each processor's own kind of payment reference: a PaymentIntent, a 16-character PSP
            # reference (Adyen), a 17-character capture id (PayPal) or a payment id, pay_ and 26
            # word characters (Checkout.com).
            if processor == "stripe":
                reference = f"pi_demo_{number:04d}"
            elif processor == "paypal":
                reference = f"DEMO{number:013d}"
            elif processor == "checkout":
                reference = f"pay_demo{number:022d}"
            else:
                reference = f"DEMO{number:012d}"
            made.append(
                DemoPayment(
                    connection=connection,
                    reference=reference,
                    processor=processor,
                    amount=amount,
                    currency=self._currencies[connection],
                    captured_at=now - dt.timedelta(seconds=self._rng.randint(3600, 30 * 86400)),
                    order_id=f"ord_demo_{number:04d}",
                    refundable=amount,
                )
            )
        return made

    async def register(self, payments: list[DemoPayment], *, use_in_traffic: bool = True) -> None:
        """Make the simulator and refundwatch both know these captured payments."""
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def one(payment: DemoPayment) -> None:
            async with limit:
                sim = await self._client.post(f"{self._sim}/_control/payments", json=payment.simulator_body())
                if sim.status_code not in (200, 201):
                    raise RuntimeError(
                        f"simulator refused payment {payment.reference} ({sim.status_code}): {sim.text[:200]}"
                    )
                api = await self._client.post(
                    f"{self._api}/api/v1/payments", json=payment.api_body(), headers=self._auth
                )
                if api.status_code not in (200, 201):
                    raise RuntimeError(
                        f"POST /api/v1/payments {payment.reference} answered {api.status_code}: "
                        f"{api.text[:200]}"
                    )
                refundable = api.json().get("refundable_amount")
                if isinstance(refundable, int):
                    payment.refundable = refundable

        await asyncio.gather(*(one(p) for p in payments))
        if use_in_traffic:
            self._pool.extend(payments)

    # -------------------------------------------------------------------------------------- refunds

    def _plan(self) -> PlannedRefund | None:
        candidates = [p for p in self._pool if p.refundable >= _MIN_REFUND]
        if not candidates:
            return None
        payment = self._rng.choice(candidates)
        if self._rng.random() < 0.12:
            amount = payment.refundable  # the rest of it: a full return
        else:
            amount = int(payment.amount * self._rng.uniform(0.05, 0.5)) // 100 * 100
        amount = max(_MIN_REFUND, min(amount, payment.refundable))
        # Keep most refunds below the approval threshold: nobody approves in the demo yet, and a
        # pile of pending approvals would hide the live flow. A few above it fill the approvals page.
        cap = self._threshold(payment.currency) - 100
        if amount > cap >= _MIN_REFUND and self._rng.random() > 0.05:
            amount = cap
        payment.refundable -= amount
        reason = self._rng.choices(REASONS, weights=_REASON_WEIGHTS)[0]
        return PlannedRefund(payment, amount, reason, f"demo-{uuid.uuid4()}")

    def _over_refund(self) -> PlannedRefund | None:
        if not self._pool:
            return None
        payment = self._rng.choice(self._pool)
        # More than was ever captured: rejected with 422 whatever else happened to the payment.
        return PlannedRefund(
            payment,
            payment.amount + 100,
            "requested_by_customer",
            f"demo-{uuid.uuid4()}",
            expect_rejection=True,
        )

    async def planned_refunds(self) -> AsyncIterator[PlannedRefund]:
        """Endless stream of refund requests at the configured rate, topping up payments as needed."""
        next_over_refund = time.monotonic() + self._rng.uniform(60, 180)
        while True:
            await asyncio.sleep(1.0 / self._rng.uniform(*self._rate))
            if sum(1 for p in self._pool if p.refundable >= _MIN_REFUND) < _LOW_WATER:
                # Forget used-up payments: the pool stays small however long the demo runs.
                self._pool = [p for p in self._pool if p.refundable >= _MIN_REFUND]
                try:
                    await self.register(self.new_payments(_TOP_UP))
                except (httpx2.HTTPError, RuntimeError):
                    self.stats.errors += 1  # try again on the next round; the supervisor watches processes
            if time.monotonic() >= next_over_refund:
                next_over_refund = time.monotonic() + self._rng.uniform(120, 300)
                over = self._over_refund()
                if over is not None:
                    yield over
                    continue
            if self._recent and self._rng.random() < 0.04:
                yield self._rng.choice(self._recent)  # a returns system retrying: same key, same body
                continue
            plan = self._plan()
            if plan is not None:
                yield plan

    async def send(self, plan: PlannedRefund) -> int | None:
        """POST one refund; returns the HTTP status, None when the request itself failed."""
        self.stats.sent += 1
        headers = {**self._auth, "Idempotency-Key": plan.idempotency_key}
        try:
            answer = await self._client.post(f"{self._api}/api/v1/refunds", json=plan.body(), headers=headers)
        except httpx2.HTTPError:
            self.stats.errors += 1
            return None
        if answer.status_code == 201:
            self.stats.created += 1
            self._recent.append(plan)
        elif answer.status_code == 200:
            self.stats.replayed += 1
        elif answer.status_code == 422:
            self.stats.rejected += 1
            if not plan.expect_rejection:
                plan.payment.refundable = 0  # our view was wrong; stop using this payment
        else:
            self.stats.errors += 1
        return answer.status_code

    async def seed_history(self, count: int) -> int:
        """Create ``count`` refunds at once; returns how many were created."""
        plans = [p for p in (self._plan() for _ in range(count)) if p is not None]
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def one(plan: PlannedRefund) -> int | None:
            async with limit:
                return await self.send(plan)

        statuses = await asyncio.gather(*(one(p) for p in plans))
        return sum(1 for s in statuses if s == 201)

    async def seed(self, payments: int, refunds: int, *, faults: bool) -> DemoPayment:
        """Demo start: faults (optional), payments, a history of refunds. Returns a payment kept out of
        the traffic, so the banner's example refund always has a balance to refund from."""
        if faults:
            await self.configure_simulator()  # before the history, so it has failures too
        showcase = self.new_payments(1)[0]
        await self.register([showcase], use_in_traffic=False)
        await self.register(self.new_payments(payments - 1))
        await self.seed_history(refunds)
        return showcase

    async def run(self, report: Callable[[str], None] | None = None, report_every: float = 60.0) -> None:
        """Keep refunds flowing until cancelled; ``report`` gets a one-line summary now and then."""
        last_report = time.monotonic()
        try:
            async for plan in self.planned_refunds():
                await self._in_flight.acquire()  # slow gateways slow the stream instead of piling up
                task = asyncio.create_task(self._send_released(plan))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                if report is not None and time.monotonic() - last_report >= report_every:
                    last_report = time.monotonic()
                    report(self.stats.line())
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send_released(self, plan: PlannedRefund) -> None:
        try:
            await self.send(plan)
        finally:
            self._in_flight.release()
