"""Checkout.com's Financial actions report at ``GET /_control/reports/checkout``: it parses with refundwatch's
own parser, it is cumulative, and each discrepancy of ``POST /_control/discrepancies`` shows in it as
CONTRACT §7 says.

The simulator runs in process (Litestar's TestClient on ``create_app()``, one Checkout.com connection).
The Checkout.com refund endpoint is another helper's work, so every refund here is put straight into the
shared store as that endpoint records it (``Store.add_refund``; Refund.id = the action id ``act_…``,
Refund.credential = the secret key, ``Refund.extra["reference"]`` = the ``reference`` sent, i.e.
refundwatch's refund id, ``Refund.extra["metadata"]`` = the ``metadata`` sent); later status changes go
through ``Store.set_status``. Payments are registered through the control API.
"""

from __future__ import annotations

import io
import random
import string
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from refundwatch.reconciliation.lines import SettlementLine
from refundwatch.reconciliation.parsing import parser_for
from refundwatch.simulator.app import create_app
from refundwatch.simulator.checkout import reports
from refundwatch.simulator.checkout.reports import new_action_id, report_amount
from refundwatch.simulator.state import Refund, Store

SECRET = "sk_sbox_rwsimcheckout0000000000000000"
OTHER_SECRET = "sk_sbox_rwsimcheckout1111111111111111"


class CheckoutSide:
    def __init__(self, client: TestClient[Any], store: Store, app: Any) -> None:
        self.client = client
        self.store = store
        self.app = app

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, f"/_control{path}", json=body)

    def payment(self, amount: int, currency: str) -> str:
        payment_id = "pay_" + "".join(random.choices(string.ascii_lowercase + "234567", k=26))
        body = {
            "processor": "checkout",
            "payment_reference": payment_id,
            "amount": amount,
            "currency": currency,
        }
        response = self.control("POST", "/payments", body)
        assert response.status_code == 201, response.text
        return payment_id

    def refund(
        self,
        payment_id: str,
        amount: int,
        status: str = "succeeded",
        secret: str = SECRET,
        *,
        reference: bool = True,
    ) -> tuple[str, str]:
        """(Checkout.com's action id, refundwatch's refund id sent as the reference)."""
        payment = self.store.find_payment("checkout", payment_id)
        assert payment is not None
        ours = str(uuid.uuid4())
        action_id = new_action_id()
        key = f"rw_{uuid.UUID(ours).hex}"
        made = Refund(
            action_id, "checkout", payment, amount, payment.currency, status, int(time.time()), secret,
            idempotency_key=key,
            extra={"reference": ours if reference else None,
                   "metadata": {"refund_id": ours, "idempotency_key": key}, "decline": None},
        )  # fmt: skip
        self.store.add_refund(made)
        return action_id, ours

    def report(self, query: str = "") -> tuple[str, list[SettlementLine]]:
        response = self.client.get(f"/_control/reports/checkout{query}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "financial-actions_" in response.headers["content-disposition"]
        lines = list(parser_for("checkout").parse(io.BytesIO(response.content), "financial-actions.csv"))
        return response.text, lines

    def inject(self, **body: Any) -> dict[str, Any]:
        response = self.control("POST", "/discrepancies", body)
        assert response.status_code == 201, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture(scope="module")
def app_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckoutSide]:
    folder = tmp_path_factory.mktemp("checkout-reports")
    path = folder / "connections.toml"
    path.write_text(
        f'[[connection]]\nname = "checkout-eu"\nprocessor = "checkout"\nsecret_key = "{SECRET}"\n'
        'webhook_signature_key = "whsk_rwsim"\n',
        encoding="utf-8",
    )
    app = create_app(path, paypal_cert_dir=folder / "certs")
    with TestClient(app) as client:
        yield CheckoutSide(client, app.state["store"], app)


@pytest.fixture
def co(app_side: CheckoutSide) -> CheckoutSide:
    assert app_side.control("POST", "/reset").status_code == 200
    return app_side


def of(lines: list[SettlementLine], action_id: str, kind: str = "refund") -> list[SettlementLine]:
    return [line for line in lines if line.gateway_refund_id == action_id and line.kind.value == kind]


def fees_of(lines: list[SettlementLine], action_id: str) -> list[SettlementLine]:
    return [line for line in lines if line.line_key == f"{action_id}|Refund Fixed Fee"]


def test_the_report_parses_with_refundwatchs_parser_in_every_exponent(co: CheckoutSide) -> None:
    eur, jpy, kwd = co.payment(10_000, "EUR"), co.payment(50_000, "JPY"), co.payment(5_000, "KWD")
    eur_refund, eur_ours = co.refund(eur, 1_250)
    jpy_refund, jpy_ours = co.refund(jpy, 1_200)
    kwd_refund, kwd_ours = co.refund(kwd, 5_000)  # the whole payment
    pending, _ = co.refund(eur, 100, status="pending")  # not processed yet: no financial action
    unnamed, unnamed_ours = co.refund(eur, 200, reference=False)
    text, lines = co.report()
    assert of(lines, unnamed)[0].merchant_reference == unnamed_ours  # from the metadata's refund_id
    assert of(lines, pending) == []
    payments = {line.gateway_payment_id: line for line in lines if line.kind.value == "payment"}
    assert (payments[eur].gross, payments[jpy].gross, payments[jpy].currency) == (10_000, 50_000, "JPY")
    assert payments[eur].raw_type == "Capture/Capture"
    (eur_line,) = of(lines, eur_refund)
    (jpy_line,) = of(lines, jpy_refund)
    (kwd_line,) = of(lines, kwd_refund)
    assert (eur_line.gross, eur_line.currency, eur_line.merchant_reference) == (-1_250, "EUR", eur_ours)
    assert (jpy_line.gross, jpy_line.currency, jpy_line.merchant_reference) == (-1_200, "JPY", jpy_ours)
    assert (kwd_line.gross, kwd_line.currency, kwd_line.merchant_reference) == (-5_000, "KWD", kwd_ours)
    assert (eur_line.gateway_payment_id, eur_line.raw_type) == (eur, "Partial Refund/Refund")
    assert kwd_line.raw_type == "Refund/Refund"
    # Major units with 8 decimals, signed: the exponent trap in both directions.
    assert ",JPY,-1200.00000000,JPY,-1200.00000000," in jpy_line.raw
    assert ",EUR,-12.50000000,EUR,-12.50000000," in eur_line.raw
    assert ",KWD,-5.00000000,KWD,-5.00000000," in kwd_line.raw
    (eur_fee,) = fees_of(lines, eur_refund)
    assert (eur_fee.kind.value, eur_fee.gross, eur_fee.gateway_payment_id) == ("fee", -10, eur)
    assert fees_of(lines, jpy_refund)[0].gross == -1  # at least one minor unit
    assert eur_line.payout_id is not None
    assert len(eur_line.payout_id) == 12
    assert eur_line.payout_id != kwd_line.payout_id  # one payout per currency and day
    assert abs(eur_line.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert eur_line.source_timezone == "UTC"
    assert text.count("\n") == len(lines) + 1
    # Cumulative: a later report repeats every earlier row byte for byte, and adds the new ones.
    later, _ = co.refund(eur, 300)
    _, again = co.report()
    kept = [line.raw for line in again if not line.line_key.startswith(later)]
    assert kept == [line.raw for line in lines]
    assert len(of(again, later)) == 1


def test_one_credentials_report_lists_its_refunds_only(co: CheckoutSide) -> None:
    eur = co.payment(10_000, "EUR")
    mine, _ = co.refund(eur, 100)
    theirs, _ = co.refund(eur, 200, secret=OTHER_SECRET)
    body, _, _ = co.app.state["reports"].report("checkout", SECRET)
    assert mine in body
    assert theirs not in body


def test_a_refund_failed_after_success_is_credited_back_by_clearing_failed(co: CheckoutSide) -> None:
    eur = co.payment(5_000, "EUR")
    action_id, ours = co.refund(eur, 700)
    refund = co.store.get_refund("checkout", action_id)
    assert refund is not None
    co.store.set_status(refund, "failed")
    _, lines = co.report()
    (paid,) = of(lines, action_id)
    (back,) = of(lines, action_id, "refund_failure")
    assert (paid.gross, back.gross) == (-700, 700)
    assert (back.raw_type, back.merchant_reference) == ("Partial Refund/Clearing Failed", ours)
    assert back.line_key != paid.line_key
    assert back.gateway_payment_id == eur


def test_each_discrepancy_changes_every_later_report(co: CheckoutSide) -> None:
    eur = co.payment(100_000, "EUR")
    jpy = co.payment(90_000, "JPY")
    made = {name: co.refund(eur, amount)[0] for name, amount in
            [("drop", 1_000), ("change", 2_000), ("fail", 3_000), ("duplicate", 4_000), ("shift", 5_000),
             ("plain", 6_000)]}  # fmt: skip
    _, before = co.report()
    co.inject(processor="checkout", kind="drop_line", gateway_refund_id=made["drop"])
    co.inject(processor="checkout", kind="change_amount", gateway_refund_id=made["change"], amount=1_999)
    co.inject(processor="checkout", kind="fail_after_success", gateway_refund_id=made["fail"])
    co.inject(processor="checkout", kind="duplicate_line", gateway_refund_id=made["duplicate"])
    co.inject(processor="checkout", kind="shift_cutoff", gateway_refund_id=made["shift"])
    foreign = co.inject(processor="checkout", kind="foreign_refund", payment_reference=jpy, amount=1_234)
    assert foreign["gateway_refund_id"].startswith("act_")
    assert len(foreign["gateway_refund_id"]) == 30
    listed = co.control("GET", "/discrepancies?processor=checkout").json()
    assert [d["kind"] for d in listed] == [
        "drop_line", "change_amount", "fail_after_success", "duplicate_line", "shift_cutoff", "foreign_refund"
    ]  # fmt: skip
    _, after = co.report()
    assert of(after, made["drop"]) == []
    assert fees_of(after, made["drop"]) == []  # the whole action is gone, its fee too
    (changed,) = of(after, made["change"])
    assert changed.gross == -1_999
    (failed,) = of(after, made["fail"], "refund_failure")
    assert (failed.gross, failed.raw_type) == (3_000, "Partial Refund/Clearing Failed")
    assert len(of(after, made["fail"])) == 1
    twice = of(after, made["duplicate"])
    assert len(twice) == 2
    assert (twice[0].raw, twice[0].line_key) == (twice[1].raw, twice[1].line_key)
    (shifted,) = of(after, made["shift"])
    (plain,) = of(after, made["plain"])
    (shift_before,) = of(before, made["shift"])
    assert shifted.payout_id != plain.payout_id == shift_before.payout_id
    assert shifted.occurred_at == shift_before.occurred_at  # processed when it was, paid out a day later
    assert fees_of(after, made["shift"])[0].payout_id == shifted.payout_id
    (outside,) = of(after, foreign["gateway_refund_id"])
    assert (outside.gross, outside.currency, outside.merchant_reference) == (-1_234, "JPY", None)
    assert outside.gateway_payment_id == jpy
    assert f",{report_amount(-1_234, 'JPY')}," in outside.raw
    assert of(after, made["plain"])[0].raw == of(before, made["plain"])[0].raw
    assert [line.raw for line in co.report()[1]] == [line.raw for line in after]
    co.control("POST", "/reset")
    assert co.control("GET", "/discrepancies").json() == []


def test_discrepancies_on_checkout_refunds_that_never_settled_are_refused(co: CheckoutSide) -> None:
    eur = co.payment(10_000, "EUR")
    pending, _ = co.refund(eur, 100, status="pending")
    cases = [
        ({"gateway_refund_id": pending}, 409, "refund_not_settled"),
        ({"gateway_refund_id": "act_nosuchrefund00000000000000"}, 404, "unknown_refund"),
    ]
    for values, status, code in cases:
        response = co.control(
            "POST", "/discrepancies", {"processor": "checkout", "kind": "drop_line", **values}
        )
        assert (response.status_code, response.json()["code"]) == (status, code)


def test_report_amounts_are_signed_major_units_with_eight_decimals() -> None:
    assert [report_amount(-1_250, "EUR"), report_amount(1_200, "JPY"), report_amount(-1_250, "KWD")] == [
        "-12.50000000",
        "1200.00000000",
        "-1.25000000",
    ]


def test_the_simulators_report_code_never_imports_the_adapter() -> None:
    """STYLE rule 12: the simulator is an independent witness of the parser, not a copy of it."""
    source = Path(reports.__file__).read_text(encoding="utf-8")
    imports = [row for row in source.splitlines() if row.startswith(("import ", "from "))]
    assert not [row for row in imports if "refundwatch" in row or "gateways" in row]
