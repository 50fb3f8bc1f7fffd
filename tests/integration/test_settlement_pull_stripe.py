"""refundwatch pulls Stripe's settlement data itself (issue 14 §2): a payout paid at the simulator sends
``payout.paid``, the worker pulls the payout's balance transactions, imports and matches them; the
worker's schedule pulls what a lost webhook never announced; a pull that fails leaves nothing and says
why. The pulled lines tell the same story as the itemized CSV report, discrepancies included. Real
simulator, web, worker and database, on PostgreSQL and SQLite."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import httpx2
import pytest
import stripe

from processors import STRIPE_SECRET
from refundwatch.reconciliation.parsing import parser_for
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

CONNECTION = "stripe-test"


@pytest.fixture(scope="module")
def pulls(stack: Stack) -> Stack:
    """The stack, its worker running the pull schedule every minute."""
    stack.env["REFUNDWATCH_RECONCILE_PULL_MINUTES"] = "1"
    stack.stop_worker()
    stack.start_worker()
    stack.wait_worker_ready()
    return stack


def succeeded_refunds(stack: Stack, *amounts: int, currency: str = "EUR") -> list[dict[str, Any]]:
    made = []
    for amount in amounts:
        response = stack.refund(stack.payment(amount * 4, currency), amount, currency=currency)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    return [stack.wait_status(refund_id, "succeeded") for refund_id in made]


def pay(stack: Stack) -> list[dict[str, Any]]:
    """Close the simulator's running payout period: the payouts paid to this connection."""
    paid = stack.control("payouts/pay", {"processor": "stripe"})["paid"]
    return [p["payout"] for p in paid if CONNECTION in p["connections"]]


def file_of(stack: Stack, payout_id: str) -> list[tuple[Any, ...]]:
    return db_rows(
        stack,
        "SELECT status, lines, source FROM settlement_files WHERE name = ?",
        f"stripe payout {payout_id}",
    )


def lines_of(stack: Stack, payout_id: str) -> list[dict[str, Any]]:
    rows = db_rows(
        stack,
        "SELECT l.line_key, l.kind, l.gross, l.currency, l.gateway_refund_id, l.payout_id, l.match "
        "FROM settlement_lines l JOIN settlement_files f ON f.id = l.file_id WHERE f.name = ? "
        "ORDER BY l.row_number",
        f"stripe payout {payout_id}",
    )
    keys = ("line_key", "kind", "gross", "currency", "gateway_refund_id", "payout_id", "match")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def pulled(stack: Stack, payout_id: str) -> list[dict[str, Any]]:
    """The payout's lines once imported and every one of them matched."""
    lines = lines_of(stack, payout_id)
    return lines if lines and all(line["match"] for line in lines) else []


def audited(stack: Stack, action: str, ref: str) -> list[dict[str, Any]]:
    rows = db_rows(stack, "SELECT details FROM audit_log WHERE action = ? ORDER BY id", action)
    found = [json.loads(row[0]) for row in rows]
    return [details for details in found if details.get("ref") == ref]


def announce(stack: Stack, payout: dict[str, Any]) -> str:
    """Deliver a signed ``payout.paid`` ourselves, as Stripe would (again); its event id."""
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    body = json.dumps(
        {"id": event_id, "object": "event", "type": "payout.paid", "data": {"object": payout}}
    ).encode()
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_SECRET)
    response = httpx2.post(
        f"{stack.web_url}/webhooks/{CONNECTION}",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": str(signature)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return event_id


def open_breaks(stack: Stack) -> list[dict[str, Any]]:
    with stack.api() as client:
        page = client.get(
            "/api/v1/reconciliation/breaks", params={"connection": CONNECTION, "status": "open", "limit": 200}
        )
    assert page.status_code == 200, page.text
    breaks: list[dict[str, Any]] = page.json()["data"]
    return breaks


def test_a_paid_payout_is_pulled_imported_and_matched_once(pulls: Stack) -> None:
    stack = pulls
    made = succeeded_refunds(stack, 1_100, 1_200) + succeeded_refunds(stack, 1_300, currency="JPY")
    payouts = pay(stack)
    assert sorted(p["currency"] for p in payouts) == ["eur", "jpy"]
    for payout in payouts:
        lines = wait_until(lambda p=payout: pulled(stack, p["id"]), timeout=60, what="the payout pulled")
        assert {line["payout_id"] for line in lines} == {payout["id"]}
        assert file_of(stack, payout["id"]) == [("imported", len(lines), "api")]
    refund_lines = [line for p in payouts for line in lines_of(stack, p["id"]) if line["kind"] == "refund"]
    assert sorted(
        (line["gateway_refund_id"], line["gross"], line["currency"]) for line in refund_lines
    ) == sorted((r["gateway_refund_id"], -r["amount"], r["currency"]) for r in made)
    assert {line["match"] for line in refund_lines} == {"matched"}
    assert open_breaks(stack) == []
    # The webhook's outcome names the pull it queued.
    outcomes = db_rows(stack, "SELECT outcome FROM webhook_events WHERE event_type = ?", "payout.paid")
    assert {row[0] for row in outcomes} == {"payout.paid: settlement pull queued"}

    # Announced again: pulled again, and nothing is added.
    eur = next(p for p in payouts if p["currency"] == "eur")
    before = lines_of(stack, eur["id"])
    announce(stack, eur)
    wait_until(
        lambda: any(d.get("already") for d in audited(stack, "reconciliation:settlement:pull", eur["id"])),
        timeout=60,
        what="the second pull",
    )
    assert lines_of(stack, eur["id"]) == before
    assert len(file_of(stack, eur["id"])) == 1
    assert open_breaks(stack) == []


def test_a_discrepancy_shows_in_the_pull_as_in_the_report(pulls: Stack) -> None:
    stack = pulls
    changed, dropped, doubled = succeeded_refunds(stack, 2_000, 2_100, 2_200)
    for kind, refund, extra in [
        ("change_amount", changed, {"amount": 1_999}),
        ("drop_line", dropped, {}),
        ("duplicate_line", doubled, {}),
    ]:
        body = {
            "processor": "stripe",
            "kind": kind,
            "gateway_refund_id": refund["gateway_refund_id"],
            **extra,
        }
        stack.control("discrepancies", body)
    (payout,) = pay(stack)
    wait_until(lambda: pulled(stack, payout["id"]), timeout=60, what="the payout pulled")
    ours = {r["gateway_refund_id"] for r in (changed, dropped, doubled)}
    in_pull = sorted(
        (line["line_key"], line["gross"], line["payout_id"])
        for line in lines_of(stack, payout["id"])
        if line["gateway_refund_id"] in ours
    )
    report = httpx2.get(
        f"{stack.sim_url}/_control/reports/stripe", params={"connection": CONNECTION}, timeout=30
    )
    assert report.status_code == 200, report.text
    in_report = sorted(
        (line.line_key, line.gross, line.payout_id)
        for line in parser_for("stripe").parse(io.BytesIO(report.content), "report.csv")
        if line.gateway_refund_id in ours
    )
    assert in_pull == in_report
    assert [gross for _, gross, _ in in_pull] == sorted([-1_999, -2_200, -2_200])
    found = {(b["kind"], b["gateway_refund_id"]) for b in open_breaks(stack)}
    assert ("amount_mismatch", changed["gateway_refund_id"]) in found
    assert ("duplicate_line", doubled["gateway_refund_id"]) in found


def test_a_failing_pull_leaves_nothing_and_the_schedule_pulls_it_later(pulls: Stack) -> None:
    stack = pulls
    (refund,) = succeeded_refunds(stack, 1_500)
    stack.faults(webhook_drop_rate=1.0, error_rate=1.0)  # payout.paid is lost; Stripe answers 5xx
    try:
        (payout,) = pay(stack)
        announce(stack, payout)
        failures = wait_until(
            lambda: audited(stack, "reconciliation:settlement:pull_failed", payout["id"]),
            timeout=60,
            what="the failed pull",
        )
        assert failures[0]["reason"].startswith("Stripe answered 50"), failures
        stack.faults(webhook_drop_rate=1.0, malformed_rate=1.0)  # now a garbled answer
        announce(stack, payout)
        failures = wait_until(
            lambda: audited(stack, "reconciliation:settlement:pull_failed", payout["id"])[1:],
            timeout=60,
            what="the second failed pull",
        )
        assert "unreadable" in failures[0]["reason"], failures
        for details in audited(stack, "reconciliation:settlement:pull_failed", payout["id"]):
            assert "Traceback" not in details["reason"]
            assert "\n" not in details["reason"]
        assert file_of(stack, payout["id"]) == []
        assert lines_of(stack, payout["id"]) == []
    finally:
        stack.faults()
    # No webhook will come: the worker's schedule finds the paid payout and pulls it.
    lines = wait_until(
        lambda: pulled(stack, payout["id"]), timeout=150, interval=1, what="the scheduled pull"
    )
    (line,) = [line for line in lines if line["kind"] == "refund"]
    assert (line["gateway_refund_id"], line["gross"], line["match"]) == (
        refund["gateway_refund_id"],
        -1_500,
        "matched",
    )
