"""Stripe's automatic payouts and their balance transactions, built from the settlement lines.

The same lines as the itemized report (``settlement``: the ledger with every discrepancy applied), the
same balance transactions (``settlement.entry``), the same payout ids (``schedule``): a pull through
``GET /v1/balance_transactions?payout=`` and the CSV report tell the same story.

The simulator's rules (written from docs.stripe.com/api/payouts and /api/balance_transactions; the
timing is compressed, as a test tool needs):
- one automatic payout per account (API key), payout period and currency that has lines; an account's
  lines are its own refunds and every registered payment (payments belong to no account here);
- a payout exists once its period is closed, and is ``paid`` at once (a real one is ``in_transit``
  until its ``arrival_date``): ``created`` and ``arrival_date`` are the cut-off;
- its ``amount`` is the sum of its lines' ``net`` (negative when refunds outweigh charges);
- listing a payout's balance transactions gives its lines and the payout's own (``type`` ``payout``),
  newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settlement import Line, stable_id
from .schedule import Period, Schedule
from .settlement import Entry, entry

__all__ = ["Payout", "balance_transaction", "payout_object", "payout_transactions", "payouts_of"]


@dataclass(slots=True)
class Payout:
    id: str
    period: Period
    currency: str  # upper case
    entries: list[Entry]  # booking order
    created: list[int]  # each entry's booking time

    @property
    def amount(self) -> int:
        return sum(e.net for e in self.entries)

    @property
    def balance_transaction(self) -> str:
        return stable_id("txn_", "payout", self.id)


def payouts_of(lines: list[Line], schedule: Schedule, now: float | None = None) -> list[Payout]:
    """The payouts of closed periods among ``lines`` (one account's), oldest first."""
    found: dict[str, Payout] = {}
    for line in lines:
        period = schedule.period_of(line.at, line.shift)
        if not period.closed(now):
            continue
        payout_id = schedule.payout_id(period, line.currency)
        payout = found.get(payout_id)
        if payout is None:
            payout = found[payout_id] = Payout(payout_id, period, line.currency.upper(), [], [])
        payout.entries.append(entry(line))
        payout.created.append(line.at)
    return sorted(found.values(), key=lambda p: (p.period.end, p.id))


def payout_object(payout: Payout, *, livemode: bool) -> dict[str, Any]:
    cut_off = payout.period.end
    return {
        "id": payout.id,
        "object": "payout",
        "amount": payout.amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": cut_off,
        "automatic": True,
        "balance_transaction": payout.balance_transaction,
        "created": cut_off,
        "currency": payout.currency.lower(),
        "description": "STRIPE PAYOUT",
        "destination": "ba_" + stable_id("", "bank account", length=24),
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": livemode,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reconciliation_status": "completed",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": "paid",
        "trace_id": {"status": "supported", "value": None},
        "type": "bank_account",
    }


def balance_transaction(booked: Entry, created: int, currency: str) -> dict[str, Any]:
    """One line as ``GET /v1/balance_transactions`` answers it: signed minor units."""
    fee_details = (
        [
            {
                "amount": booked.fee,
                "application": None,
                "currency": currency.lower(),
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if booked.fee
        else []
    )
    return {
        "id": booked.txn,
        "object": "balance_transaction",
        "amount": booked.gross,
        "available_on": booked.available_on,
        "balance_type": "payments",
        "created": created,
        "currency": currency.lower(),
        "description": booked.description,
        "exchange_rate": None,
        "fee": booked.fee,
        "fee_details": fee_details,
        "net": booked.net,
        "reporting_category": booked.category,
        "source": booked.source,
        "status": "available",
        "type": booked.type,
    }


def payout_transactions(payout: Payout) -> list[dict[str, Any]]:
    """A payout's balance transactions, newest first: the payout's own, then its lines."""
    own = {
        "id": payout.balance_transaction,
        "object": "balance_transaction",
        "amount": -payout.amount,
        "available_on": payout.period.end,
        "balance_type": "payments",
        "created": payout.period.end,
        "currency": payout.currency.lower(),
        "description": "STRIPE PAYOUT",
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": -payout.amount,
        "reporting_category": "payout",
        "source": payout.id,
        "status": "available",
        "type": "payout",
    }
    lines = [
        balance_transaction(booked, at, payout.currency)
        for booked, at in zip(payout.entries, payout.created, strict=True)
    ]
    return [own, *reversed(lines)]
