"""Settlement reports (``GET /_control/reports/{processor}``) and injected discrepancies
(``POST /_control/discrepancies``): each report parses with refundwatch's own parsers, and each
discrepancy changes it as CONTRACT §7 says."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from typing import Any

import pytest

from refundwatch.reconciliation.lines import SettlementLine
from refundwatch.reconciliation.parsing import parser_for

from .conftest import EU_KEY, US_KEY, Simulator, wait_for

ADYEN_KEY = "AQE_reports_test_key"
MERCHANT = "ReportsECOM"
PROCESSORS = ["stripe", "adyen"]


def new_payment(sim: Simulator, processor: str, amount: int, currency: str) -> str:
    reference = f"pi_{uuid.uuid4().hex[:20]}" if processor == "stripe" else uuid.uuid4().hex[:16].upper()
    sim.payment(reference, amount, currency, processor)
    return reference


def refund(sim: Simulator, processor: str, payment: str, amount: int, currency: str) -> tuple[str, str]:
    """(the processor's refund id, the reference refundwatch would have sent with it)."""
    ours = str(uuid.uuid4())
    if processor == "stripe":
        made = sim.client().v1.refunds.create(
            params={"payment_intent": payment, "amount": amount, "metadata": {"refundwatch_refund_id": ours}}
        )
        return made.id, ours
    response = sim.http.post(
        f"{sim.url}/adyen/v72/payments/{payment}/refunds",
        headers={"x-api-key": ADYEN_KEY},
        json={
            "merchantAccount": MERCHANT,
            "amount": {"value": amount, "currency": currency},
            "reference": ours,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["pspReference"], ours


def settled(sim: Simulator, processor: str, refund_id: str, status: str = "succeeded") -> None:
    wait_for(lambda: any(r["gateway_refund_id"] == refund_id and r["status"] == status for r in sim.ledger()))


def report(sim: Simulator, processor: str) -> tuple[str, list[SettlementLine]]:
    response = sim.control("GET", f"/reports/{processor}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    parser = parser_for(processor)
    return response.text, list(parser.parse(io.BytesIO(response.content), f"{processor}.csv"))


def refund_lines(lines: list[SettlementLine], refund_id: str, kind: str = "refund") -> list[SettlementLine]:
    return [line for line in lines if line.gateway_refund_id == refund_id and line.kind.value == kind]


def inject(sim: Simulator, **body: Any) -> dict[str, Any]:
    response = sim.control("POST", "/discrepancies", body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def fast(sim: Simulator) -> Simulator:
    sim.faults(processor="adyen", settle_ms=20)
    sim.faults(processor="stripe", settle_ms=20)
    return sim


@pytest.mark.parametrize("processor", PROCESSORS)
def test_the_report_parses_with_refundwatchs_parser_including_a_zero_decimal_currency(
    fast: Simulator, processor: str
) -> None:
    eur, jpy = new_payment(fast, processor, 10_000, "EUR"), new_payment(fast, processor, 50_000, "JPY")
    eur_refund, eur_ours = refund(fast, processor, eur, 1_250, "EUR")
    jpy_refund, jpy_ours = refund(fast, processor, jpy, 1_200, "JPY")
    for refund_id in (eur_refund, jpy_refund):
        settled(fast, processor, refund_id)
    # Not settled: a refund still pending (Stripe) or refused (Adyen) has no line.
    fast.faults(processor=processor, pending_rate=1.0, fail_later_rate=1.0, settle_ms=60_000)
    unsettled, _ = refund(fast, processor, eur, 100, "EUR")
    text, lines = report(fast, processor)
    assert refund_lines(lines, unsettled) == []
    payments = {line.gateway_payment_id: line for line in lines if line.kind.value == "payment"}
    assert {payments[eur].gross, payments[jpy].gross} == {10_000, 50_000}
    assert payments[jpy].currency == "JPY"
    assert payments[jpy].fee > 0
    (eur_line,) = refund_lines(lines, eur_refund)
    (jpy_line,) = refund_lines(lines, jpy_refund)
    assert (eur_line.gross, eur_line.currency, eur_line.merchant_reference) == (-1_250, "EUR", eur_ours)
    assert (jpy_line.gross, jpy_line.currency, jpy_line.merchant_reference) == (-1_200, "JPY", jpy_ours)
    assert jpy_line.gateway_payment_id == jpy
    assert eur_line.payout_id
    assert "1200" in jpy_line.raw
    assert "12.00" not in jpy_line.raw
    assert "12.50" in eur_line.raw
    if processor == "adyen":
        kinds = Counter(line.raw_type for line in lines)
        assert kinds["Fee"] >= 1
        assert kinds["MerchantPayout"] >= 1
        assert eur_line.payout_id == next(line.payout_id for line in lines if line.raw_type == "Fee")
        assert eur_line.source_timezone in {"CET", "CEST"}
    # Cumulative: a later report repeats every earlier refund line byte for byte.
    _, again = report(fast, processor)
    assert refund_lines(again, eur_refund)[0].raw == eur_line.raw
    assert text.count("\n") == len(lines) + 1


@pytest.mark.parametrize("processor", PROCESSORS)
def test_a_refund_failing_after_success_gives_its_money_back_in_its_own_line(
    fast: Simulator, processor: str
) -> None:
    fast.faults(processor=processor, fail_later_rate=1.0, reversal_rate=1.0, settle_ms=20)
    payment = new_payment(fast, processor, 5_000, "EUR")
    refund_id, _ = refund(fast, processor, payment, 700, "EUR")
    settled(fast, processor, refund_id, "failed" if processor == "stripe" else "reversed")
    _, lines = report(fast, processor)
    (paid,) = refund_lines(lines, refund_id)
    (back,) = refund_lines(lines, refund_id, "refund_failure")
    assert (paid.gross, back.gross) == (-700, 700)
    assert back.raw_type == ("refund_failure" if processor == "stripe" else "RefundedReversed")


@pytest.mark.parametrize("processor", PROCESSORS)
def test_each_discrepancy_changes_every_later_report(fast: Simulator, processor: str) -> None:
    payment = new_payment(fast, processor, 100_000, "EUR")
    jpy = new_payment(fast, processor, 90_000, "JPY")
    made = {name: refund(fast, processor, payment, amount, "EUR")[0] for name, amount in
            [("drop", 1_000), ("change", 2_000), ("fail", 3_000), ("duplicate", 4_000), ("shift", 5_000),
             ("plain", 6_000)]}  # fmt: skip
    for refund_id in made.values():
        settled(fast, processor, refund_id)
    _, before = report(fast, processor)
    inject(fast, processor=processor, kind="drop_line", gateway_refund_id=made["drop"])
    inject(fast, processor=processor, kind="change_amount", gateway_refund_id=made["change"], amount=1_999)
    inject(fast, processor=processor, kind="fail_after_success", gateway_refund_id=made["fail"])
    inject(fast, processor=processor, kind="duplicate_line", gateway_refund_id=made["duplicate"])
    inject(fast, processor=processor, kind="shift_cutoff", gateway_refund_id=made["shift"])
    foreign = inject(fast, processor=processor, kind="foreign_refund", payment_reference=jpy, amount=1_234)
    listed = fast.control("GET", f"/discrepancies?processor={processor}").json()
    assert [d["kind"] for d in listed] == [
        "drop_line", "change_amount", "fail_after_success", "duplicate_line", "shift_cutoff", "foreign_refund"
    ]  # fmt: skip
    _, after = report(fast, processor)
    assert refund_lines(after, made["drop"]) == []
    (changed,) = refund_lines(after, made["change"])
    assert changed.gross == -1_999
    (failed,) = refund_lines(after, made["fail"], "refund_failure")
    assert failed.gross == 3_000
    assert len(refund_lines(after, made["fail"])) == 1
    twice = refund_lines(after, made["duplicate"])
    assert len(twice) == 2
    assert twice[0].raw == twice[1].raw
    assert twice[0].line_key == twice[1].line_key
    (shifted,) = refund_lines(after, made["shift"])
    (plain,) = refund_lines(after, made["plain"])
    (shift_before,) = refund_lines(before, made["shift"])
    assert shifted.payout_id != plain.payout_id == shift_before.payout_id
    assert shifted.occurred_at == shift_before.occurred_at
    assert shifted.gross == -5_000
    (outside,) = refund_lines(after, foreign["gateway_refund_id"])
    assert (outside.gross, outside.currency, outside.merchant_reference) == (-1_234, "JPY", None)
    assert outside.gateway_payment_id == jpy
    # Lines no discrepancy touched are the same bytes as before; the next report is the same again.
    assert refund_lines(after, made["plain"])[0].raw == refund_lines(before, made["plain"])[0].raw
    assert [line.raw for line in report(fast, processor)[1]] == [line.raw for line in after]
    # Reset forgets them.
    fast.reset()
    assert fast.control("GET", "/discrepancies").json() == []


def test_bad_discrepancies_are_refused_with_a_code(fast: Simulator) -> None:
    payment = new_payment(fast, "stripe", 10_000, "EUR")
    refund_id, _ = refund(fast, "stripe", payment, 100, "EUR")
    fast.faults(processor="stripe", pending_rate=1.0, settle_ms=60_000)
    pending, _ = refund(fast, "stripe", payment, 100, "EUR")

    def ask(kind: str, **values: Any) -> dict[str, Any]:
        return {"processor": "stripe", "kind": kind, **values}

    cases: list[tuple[Any, int, str]] = [
        ([], 400, "invalid_body"),
        (ask("drop_line", gateway_refund_id=refund_id, x=1), 400, "unknown_field"),
        (
            {**ask("drop_line", gateway_refund_id=refund_id), "processor": "square"},
            400,
            "invalid_processor",
        ),
        (ask("lose_it", gateway_refund_id=refund_id), 400, "invalid_kind"),
        (ask("drop_line"), 400, "missing_gateway_refund_id"),
        (ask("change_amount", gateway_refund_id=refund_id), 400, "missing_amount"),
        (ask("change_amount", gateway_refund_id=refund_id, amount=-5), 400, "invalid_amount"),
        (ask("change_amount", gateway_refund_id=refund_id, amount=10**15 + 1), 400, "invalid_amount"),
        (ask("foreign_refund", payment_reference=payment, amount=10**21), 400, "invalid_amount"),
        (ask("drop_line", gateway_refund_id=refund_id, amount=5), 400, "unexpected_field"),
        (ask("drop_line", gateway_refund_id="re_nope"), 404, "unknown_refund"),
        (ask("drop_line", gateway_refund_id=pending), 409, "refund_not_settled"),
        (ask("foreign_refund", amount=5), 400, "missing_payment_reference"),
        (ask("foreign_refund", payment_reference="pi_nope", amount=5), 404, "unknown_payment"),
    ]
    for body, status, code in cases:
        response = fast.control("POST", "/discrepancies", body)
        assert (response.status_code, response.json().get("code")) == (status, code), (body, response.text)
    assert fast.control("GET", "/discrepancies").json() == []
    assert fast.control("GET", "/reports/square").json()["code"] == "no_report"
    assert fast.control("GET", "/reports/acme").json()["code"] == "unknown_processor"
    bad_since = fast.control("GET", "/reports/stripe?since=abc")  # Litestar's own 400 had no code
    assert (bad_since.status_code, bad_since.json()["code"]) == (400, "invalid_parameter"), bad_since.text


def test_one_connections_report_lists_the_refunds_made_with_its_credentials(wsim: Simulator) -> None:
    """Two Stripe accounts in the connections file: each one's report has its own refunds only (a
    merchant account's payout report), so importing it under that connection finds nothing foreign."""
    payment = new_payment(wsim, "stripe", 10_000, "EUR")
    eu = wsim.client(EU_KEY).v1.refunds.create(params={"payment_intent": payment, "amount": 1_000})
    us = wsim.client(US_KEY).v1.refunds.create(params={"payment_intent": payment, "amount": 2_000})
    settled(wsim, "stripe", eu.id)
    settled(wsim, "stripe", us.id)
    parser = parser_for("stripe")

    def refunds_in(connection: str) -> set[str | None]:
        response = wsim.control("GET", f"/reports/stripe?connection={connection}")
        assert response.status_code == 200, response.text
        lines = parser.parse(io.BytesIO(response.content), f"{connection}.csv")
        return {line.gateway_refund_id for line in lines if line.kind.value == "refund"}

    assert refunds_in("stripe-eu") == {eu.id}
    assert refunds_in("stripe-us") == {us.id}
    missing = wsim.control("GET", "/reports/stripe?connection=stripe-nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_connection")


def test_a_report_since_a_moment_has_only_the_lines_booked_from_then(fast: Simulator) -> None:
    payment = new_payment(fast, "stripe", 10_000, "EUR")
    first, _ = refund(fast, "stripe", payment, 1_000, "EUR")
    settled(fast, "stripe", first)
    _, lines = report(fast, "stripe")
    (booked,) = refund_lines(lines, first)
    later = int(booked.occurred_at.timestamp()) + 1
    response = fast.control("GET", f"/reports/stripe?since={later}")
    assert response.status_code == 200, response.text
    assert first not in response.text
    response = fast.control("GET", f"/reports/stripe?since={later - 1}")
    assert first in response.text
