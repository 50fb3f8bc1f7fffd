"""Stripe's payouts and balance transactions (``GET /v1/payouts``, ``GET /v1/balance_transactions``),
read with the official SDK, against the itemized report built from the same lines: a pull and the CSV
tell the same story. ``POST /_control/payouts/pay`` closes the running period and sends ``payout.paid``."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
import stripe

from refundwatch.reconciliation.lines import SettlementLine
from refundwatch.reconciliation.parsing import parser_for

from .conftest import EU_KEY, EU_SECRET, US_KEY, Simulator, WebhookReceiver, stripe_client, wait_for


def new_refund(sim: Simulator, amount: int, currency: str = "eur", key: str = EU_KEY) -> tuple[str, str]:
    """(payment intent, refund id): a captured payment of 10x ``amount`` and a refund of ``amount``."""
    intent = f"pi_{uuid.uuid4().hex[:20]}"
    sim.payment(intent, amount * 10, currency)
    made = stripe_client(sim.stripe_url, key).v1.refunds.create(
        params={"payment_intent": intent, "amount": amount, "metadata": {"refundwatch_refund_id": "x"}}
    )
    assert made.status == "succeeded"
    return intent, made.id


def pay(sim: Simulator, **body: Any) -> dict[str, Any]:
    response = sim.control("POST", "/payouts/pay", body or {"processor": "stripe"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def report(sim: Simulator, connection: str = "stripe-eu") -> list[SettlementLine]:
    response = sim.control("GET", f"/reports/stripe?connection={connection}")
    assert response.status_code == 200, response.text
    return list(parser_for("stripe").parse(io.BytesIO(response.content), "report.csv"))


def transactions(client: stripe.StripeClient, payout: str, limit: int = 100) -> list[Any]:
    page = client.v1.balance_transactions.list(params={"payout": payout, "limit": limit})
    return list(page.auto_paging_iter())


def test_the_sdk_reads_paid_payouts_and_their_transactions_as_the_report_has_them(
    wsim: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    eur_intent, eur_refund = new_refund(wsim, 1_250, "eur")
    _, jpy_refund = new_refund(wsim, 1_200, "jpy")
    client = stripe_client(wsim.stripe_url, EU_KEY)
    assert list(client.v1.payouts.list().auto_paging_iter()) == []  # the period is still open

    paid = pay(wsim)
    assert {p["payout"]["currency"] for p in paid["paid"] if p["connections"] == ["stripe-eu"]} == {
        "eur",
        "jpy",
    }
    payouts = list(client.v1.payouts.list(params={"status": "paid", "limit": 1}).auto_paging_iter())
    assert sorted(p.currency for p in payouts) == ["eur", "jpy"]
    assert all(p.object == "payout" and p.automatic and p.status == "paid" for p in payouts)
    assert all(p.arrival_date == paid["cut_off"] for p in payouts)
    since = client.v1.payouts.list(params={"arrival_date": {"gte": paid["cut_off"] + 1}})
    assert since.data == []
    eur = next(p for p in payouts if p.currency == "eur")
    assert client.v1.payouts.retrieve(eur.id).amount == eur.amount

    listed = transactions(client, eur.id, limit=1)  # one per page: the SDK follows has_more
    kinds = sorted(t.reporting_category for t in listed)
    assert kinds == ["charge", "payout", "refund"]
    refund_txn = next(t for t in listed if t.reporting_category == "refund")
    assert (refund_txn.amount, refund_txn.fee, refund_txn.net, refund_txn.source) == (
        -1_250,
        0,
        -1_250,
        eur_refund,
    )
    charge = next(t for t in listed if t.reporting_category == "charge")
    assert charge.amount == 12_500
    assert charge.fee > 0
    assert charge.net == charge.amount - charge.fee
    own = next(t for t in listed if t.type == "payout")
    assert own.id == eur.balance_transaction
    assert own.amount == -eur.amount == -(charge.net - 1_250)

    # The report has the same balance transactions, under the same payout.
    lines = {line.line_key: line for line in report(wsim)}
    for txn in listed:
        if txn.type == "payout":
            continue
        line = lines[txn.id]
        assert (line.gross, line.fee, line.net, line.payout_id) == (txn.amount, txn.fee, txn.net, eur.id)
    assert lines[next(t.id for t in transactions(client, next(p.id for p in payouts if p.currency == "jpy"))
                       if t.reporting_category == "refund")].gateway_refund_id == jpy_refund  # fmt: skip

    # payout.paid, signed like every Stripe webhook, one per payout.
    def paid_events() -> list[Any]:
        return [
            r
            for r in webhook_receiver.events()
            if r.json()["type"] == "payout.paid" and r.path == "/webhooks/stripe-eu"
        ]

    deliveries = wait_for(lambda: len(paid_events()) == 2 and paid_events())
    for delivery in deliveries:
        assert delivery.path == "/webhooks/stripe-eu"
        event = stripe.Webhook.construct_event(delivery.body, delivery.headers["Stripe-Signature"], EU_SECRET)
        assert event.data.object["id"] in {p.id for p in payouts}
        assert event.data.object["status"] == "paid"

    # What comes later goes into the next payout: the paid one stays as it was, byte for byte.
    before = [t.to_dict() for t in transactions(client, eur.id)]
    stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(
        params={"payment_intent": eur_intent, "amount": 5}
    )
    assert [t.to_dict() for t in transactions(client, eur.id)] == before
    assert len(list(client.v1.payouts.list().auto_paging_iter())) == 2


def test_discrepancies_show_in_the_pull_as_in_the_report(wsim: Simulator) -> None:
    _, changed = new_refund(wsim, 2_000)
    _, dropped = new_refund(wsim, 2_100)
    _, doubled = new_refund(wsim, 2_200)
    for kind, refund_id, extra in [
        ("change_amount", changed, {"amount": 1_999}),
        ("drop_line", dropped, {}),
        ("duplicate_line", doubled, {}),
    ]:
        body = {"processor": "stripe", "kind": kind, "gateway_refund_id": refund_id, **extra}
        assert wsim.control("POST", "/discrepancies", body).status_code == 201
    pay(wsim)
    client = stripe_client(wsim.stripe_url, EU_KEY)
    (payout,) = list(client.v1.payouts.list().auto_paging_iter())
    for limit in (1, 2, 100):  # a page never splits the duplicated line's copies
        pulled = [t for t in transactions(client, payout.id, limit) if t.reporting_category == "refund"]
        by_refund = {t.source: [x.amount for x in pulled if x.source == t.source] for t in pulled}
        assert by_refund == {changed: [-1_999], doubled: [-2_200, -2_200]}, limit
    in_report = {
        (line.gateway_refund_id, line.gross, line.payout_id)
        for line in report(wsim)
        if line.kind.value == "refund"
    }
    assert in_report == {(changed, -1_999, payout.id), (doubled, -2_200, payout.id)}


def test_each_account_sees_its_own_payouts(wsim: Simulator) -> None:
    _, eu_refund = new_refund(wsim, 700, key=EU_KEY)
    new_refund(wsim, 800, key=US_KEY)
    pay(wsim)
    eu, us = stripe_client(wsim.stripe_url, EU_KEY), stripe_client(wsim.stripe_url, US_KEY)
    (eu_payout,) = list(eu.v1.payouts.list().auto_paging_iter())
    (us_payout,) = list(us.v1.payouts.list().auto_paging_iter())
    eu_sources = {t.source for t in transactions(eu, eu_payout.id) if t.reporting_category == "refund"}
    us_sources = {t.source for t in transactions(us, us_payout.id) if t.reporting_category == "refund"}
    assert eu_sources == {eu_refund}
    assert eu_refund not in us_sources
    assert len(us_sources) == 1


def test_bad_requests_get_stripes_errors(wsim: Simulator) -> None:
    new_refund(wsim, 300)
    pay(wsim)
    client = stripe_client(wsim.stripe_url, EU_KEY)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payouts.retrieve("po_missing")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as no_payout:
        client.v1.balance_transactions.list(params={"payout": "po_missing"})
    assert no_payout.value.param == "payout"
    for query, param in [
        ("limit=101", "limit"),
        ("colour=red", "colour"),
        ("created[near]=5", "created[near]"),
    ]:
        response = wsim.http.get(
            f"{wsim.stripe_url}/v1/payouts?{query}", headers={"Authorization": f"Bearer {EU_KEY}"}
        )
        assert response.status_code == 400, query
        assert response.json()["error"]["param"] == param
    assert wsim.http.get(f"{wsim.stripe_url}/v1/balance_transactions").status_code == 401
    assert wsim.control("POST", "/payouts/pay", {"processor": "adyen"}).json()["code"] == "no_payouts"
    assert wsim.control("POST", "/payouts/pay", {"when": 1}).json()["code"] == "unknown_field"
    # Reset forgets the cut-offs with the ledger.
    wsim.reset()
    assert list(client.v1.payouts.list().auto_paging_iter()) == []
