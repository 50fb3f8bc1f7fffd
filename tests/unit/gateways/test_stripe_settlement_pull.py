"""Stripe's ``payout.paid`` names the payout to pull (``WebhookEvent.settlement_ref``), with the payout
object as Stripe's spec example has it (stripe/openapi fixtures3.json, ``payout``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from refundwatch.gateways.stripe import transformers as tx
from refundwatch.reconciliation.pulling import puller_for

PAYOUT: dict[str, Any] = {
    "amount": 1100,
    "arrival_date": 1234567890,
    "automatic": True,
    "balance_transaction": "txn_1PgaxNB7WZ01zgkWEV3TLf40",
    "created": 1234567890,
    "currency": "usd",
    "id": "po_1Pgc79B7WZ01zgkWu1KToYf4",
    "livemode": False,
    "method": "standard",
    "object": "payout",
    "reconciliation_status": "completed",
    "status": "paid",
    "type": "bank_account",
}


def event(payout: object, event_type: str = "payout.paid") -> bytes:
    return json.dumps(
        {"id": "evt_1", "object": "event", "type": event_type, "data": {"object": payout}}
    ).encode()


def test_payout_paid_names_the_automatic_payout_and_changes_no_refund() -> None:
    parsed = tx.parse_event(event(PAYOUT))
    assert parsed.settlement_ref == PAYOUT["id"]
    assert parsed.status is None
    assert parsed.gateway_refund_id is None


def test_a_manual_payout_or_another_event_names_nothing_to_pull() -> None:
    assert tx.parse_event(event({**PAYOUT, "automatic": False})).settlement_ref is None
    assert tx.parse_event(event(PAYOUT, "payout.created")).settlement_ref is None


@pytest.mark.parametrize("payout", [None, "po_1", {"id": 5}, {"id": "ch_1"}, {"id": "po_" + "x" * 300}])
def test_a_payout_paid_without_a_payout_is_malformed(payout: object) -> None:
    with pytest.raises(tx.MalformedError):
        tx.parse_event(event(payout))


def test_the_registry_knows_stripes_puller_and_tolerates_a_missing_one() -> None:
    assert type(puller_for("stripe")).__name__ == "StripeSettlementPull"
    assert puller_for("paypal") is None
