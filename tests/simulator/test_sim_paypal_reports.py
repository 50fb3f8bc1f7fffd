"""PayPal's Settlement report (STL) at ``GET /_control/reports/paypal``: it parses with refundwatch's own
STL parser, it is cumulative, and each discrepancy of ``POST /_control/discrepancies`` shows in it as
CONTRACT §7 says.

The simulator runs in process (Litestar's TestClient on ``create_app()``, two PayPal connections). Most
refunds here are put straight into the shared store, as the PayPal refund endpoint records them
(``Store.add_refund``, the PayPal fields ``invoice_id`` and ``custom_id`` in ``Refund.extra``; later
status changes through ``Store.set_status``), so that each test decides their states without waiting;
one test makes them through that endpoint itself. Payments are registered through the control API.
"""

from __future__ import annotations

import base64
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
from refundwatch.simulator.paypal import reports
from refundwatch.simulator.paypal.reports import stl_amount
from refundwatch.simulator.state import Refund, Store


class PayPalSide:
    def __init__(self, client: TestClient[Any], store: Store) -> None:
        self.client = client
        self.store = store

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, f"/_control{path}", json=body)

    def payment(self, amount: int, currency: str) -> str:
        capture = "".join(random.choices(string.ascii_uppercase + string.digits, k=17))
        body = {"processor": "paypal", "payment_reference": capture, "amount": amount, "currency": currency}
        response = self.control("POST", "/payments", body)
        assert response.status_code == 201, response.text
        return capture

    def refund(self, capture: str, amount: int, status: str = "succeeded") -> tuple[str, str]:
        """(PayPal's refund id, refundwatch's refund id sent as custom_id)."""
        payment = self.store.find_payment("paypal", capture)
        assert payment is not None
        ours = uuid.uuid4()
        refund_id = "".join(random.choices(string.ascii_uppercase + string.digits, k=17))
        extra = {"invoice_id": f"rw_{ours.hex}", "custom_id": str(ours), "note_to_payer": "returned"}
        made = Refund(
            refund_id, "paypal", payment, amount, payment.currency, status, int(time.time()), "client-id",
            idempotency_key=f"rw_{ours.hex}", extra=extra,
        )  # fmt: skip
        self.store.add_refund(made)
        return refund_id, str(ours)

    def report(self) -> tuple[str, list[SettlementLine]]:
        response = self.client.get("/_control/reports/paypal")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "STL-" in response.headers["content-disposition"]
        lines = list(parser_for("paypal").parse(io.BytesIO(response.content), "STL.CSV"))
        return response.text, lines

    def inject(self, **body: Any) -> dict[str, Any]:
        response = self.control("POST", "/discrepancies", body)
        assert response.status_code == 201, response.text
        found: dict[str, Any] = response.json()
        return found


EU, US = ("AYsimEUclient", "EKsimEUsecret", "WH-EU-1"), ("AZsimUSclient", "EKsimUSsecret", "WH-US-1")


@pytest.fixture(scope="module")
def app_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayPalSide]:
    folder = tmp_path_factory.mktemp("paypal-reports")
    path = folder / "connections.toml"
    path.write_text(
        "".join(
            f'[[connection]]\nname = "{name}"\nprocessor = "paypal"\nclient_id = "{client}"\n'
            f'client_secret = "{secret}"\nwebhook_id = "{webhook}"\n\n'
            for name, (client, secret, webhook) in (("paypal-eu", EU), ("paypal-us", US))
        ),
        encoding="utf-8",
    )
    app = create_app(path, paypal_cert_dir=folder / "certs")
    with TestClient(app) as client:
        yield PayPalSide(client, app.state["store"])


@pytest.fixture
def pp(app_side: PayPalSide) -> PayPalSide:
    assert app_side.control("POST", "/reset").status_code == 200
    return app_side


def refund_lines(lines: list[SettlementLine], refund_id: str, kind: str = "refund") -> list[SettlementLine]:
    return [line for line in lines if line.gateway_refund_id == refund_id and line.kind.value == kind]


def test_the_report_parses_with_refundwatchs_parser_including_jpy(pp: PayPalSide) -> None:
    eur, jpy = pp.payment(10_000, "EUR"), pp.payment(50_000, "JPY")
    eur_refund, eur_ours = pp.refund(eur, 1_250)
    jpy_refund, jpy_ours = pp.refund(jpy, 1_200)
    pending, _ = pp.refund(eur, 100, status="pending")  # an eCheck refund not settled: no line yet
    text, lines = pp.report()
    assert refund_lines(lines, pending) == []
    payments = {line.gateway_payment_id: line for line in lines if line.kind.value == "payment"}
    assert (payments[eur].gross, payments[jpy].gross, payments[jpy].currency) == (10_000, 50_000, "JPY")
    assert payments[eur].raw_type == "T0006"
    assert payments[jpy].fee > 0
    (eur_line,) = refund_lines(lines, eur_refund)
    (jpy_line,) = refund_lines(lines, jpy_refund)
    assert (eur_line.gross, eur_line.currency, eur_line.merchant_reference) == (-1_250, "EUR", eur_ours)
    assert (jpy_line.gross, jpy_line.currency, jpy_line.merchant_reference) == (-1_200, "JPY", jpy_ours)
    assert (jpy_line.gateway_payment_id, jpy_line.raw_type, jpy_line.fee) == (jpy, "T1107", 0)
    # The x100 trap: 1200 yen is written 120000 and 12.50 EUR 1250, unsigned, with DR beside them.
    assert ',"DR",120000,"JPY",' in jpy_line.raw
    assert ',"DR",1250,"EUR",' in eur_line.raw
    assert f'"rw_{uuid.UUID(jpy_ours).hex}"' in jpy_line.raw  # Invoice ID: the attempt's key
    assert eur_line.payout_id is not None
    assert eur_line.payout_id.startswith("RWSIMPAYPAL01:")
    assert abs(eur_line.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert eur_line.source_timezone in {"-0800", "-0700"}
    records = [row.split(",", 1)[0] for row in text.splitlines()]
    assert records[:4] == ['"RH"', '"FH"', '"SH"', '"CH"']
    assert records[-3:] == ['"RF"', '"RC"', '"FF"']
    assert records.count('"SB"') == len(lines)
    # Cumulative: a later report repeats every earlier line byte for byte, and adds the new ones.
    later, _ = pp.refund(eur, 300)
    _, again = pp.report()
    assert [line.raw for line in again if line.gateway_refund_id != later] == [line.raw for line in lines]
    assert len(refund_lines(again, later)) == 1


def test_refunds_made_through_the_paypal_endpoint_are_reported_as_sent_per_connection(pp: PayPalSide) -> None:
    eur, jpy = pp.payment(10_000, "EUR"), pp.payment(50_000, "JPY")
    made: dict[str, tuple[str, str]] = {}
    for name, (client, secret, _), capture, currency, value in (
        ("eu", EU, eur, "EUR", "12.50"),
        ("us", US, jpy, "JPY", "1200"),
    ):
        auth = base64.b64encode(f"{client}:{secret}".encode()).decode()
        token = pp.client.post(
            "/paypal/v1/oauth2/token",
            content=b"grant_type=client_credentials",
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert token.status_code == 200, token.text
        ours = uuid.uuid4()
        key = f"rw_{ours.hex}"
        answer = pp.client.post(
            f"/paypal/v2/payments/captures/{capture}/refund",
            json={"amount": {"currency_code": currency, "value": value}, "invoice_id": key,
                  "custom_id": str(ours), "note_to_payer": "returned"},
            headers={"Authorization": f"Bearer {token.json()['access_token']}", "PayPal-Request-Id": key,
                     "Prefer": "return=representation"},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "COMPLETED"
        made[name] = (answer.json()["id"], str(ours))
    _, lines = pp.report()
    (eu_line,) = refund_lines(lines, made["eu"][0])
    (us_line,) = refund_lines(lines, made["us"][0])
    assert (eu_line.gross, eu_line.currency, eu_line.merchant_reference) == (-1_250, "EUR", made["eu"][1])
    assert (us_line.gross, us_line.currency, us_line.merchant_reference) == (-1_200, "JPY", made["us"][1])
    assert (eu_line.gateway_payment_id, us_line.gateway_payment_id) == (eur, jpy)
    # One connection's report: the refunds made with its client id only.
    for name, other in (("eu", "us"), ("us", "eu")):
        response = pp.client.get(f"/_control/reports/paypal?connection=paypal-{name}")
        assert response.status_code == 200, response.text
        assert made[name][0] in response.text
        assert made[other][0] not in response.text
    missing = pp.client.get("/_control/reports/paypal?connection=paypal-nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_connection")


def test_a_refund_reversed_after_success_gives_its_money_back_in_its_own_line(pp: PayPalSide) -> None:
    capture = pp.payment(5_000, "EUR")
    refund_id, ours = pp.refund(capture, 700)
    refund = pp.store.get_refund("paypal", refund_id)
    assert refund is not None
    pp.store.set_status(refund, "reversed")
    _, lines = pp.report()
    (paid,) = refund_lines(lines, refund_id)
    (back,) = refund_lines(lines, refund_id, "refund_failure")
    assert (paid.gross, back.gross) == (-700, 700)
    assert (back.raw_type, back.merchant_reference) == ("T1106", ours)
    assert back.line_key != paid.line_key  # the reversal is PayPal's own movement
    assert f'"{refund_id}","TXN","T1106"' in back.raw  # its PayPal Reference ID is the refund


def test_each_discrepancy_changes_every_later_report(pp: PayPalSide) -> None:
    capture = pp.payment(100_000, "EUR")
    jpy = pp.payment(90_000, "JPY")
    made = {name: pp.refund(capture, amount)[0] for name, amount in
            [("drop", 1_000), ("change", 2_000), ("fail", 3_000), ("duplicate", 4_000), ("shift", 5_000),
             ("plain", 6_000)]}  # fmt: skip
    _, before = pp.report()
    pp.inject(processor="paypal", kind="drop_line", gateway_refund_id=made["drop"])
    pp.inject(processor="paypal", kind="change_amount", gateway_refund_id=made["change"], amount=1_999)
    pp.inject(processor="paypal", kind="fail_after_success", gateway_refund_id=made["fail"])
    pp.inject(processor="paypal", kind="duplicate_line", gateway_refund_id=made["duplicate"])
    pp.inject(processor="paypal", kind="shift_cutoff", gateway_refund_id=made["shift"])
    foreign = pp.inject(processor="paypal", kind="foreign_refund", payment_reference=jpy, amount=1_234)
    assert len(foreign["gateway_refund_id"]) == 17
    listed = pp.control("GET", "/discrepancies?processor=paypal").json()
    assert [d["kind"] for d in listed] == [
        "drop_line", "change_amount", "fail_after_success", "duplicate_line", "shift_cutoff", "foreign_refund"
    ]  # fmt: skip
    _, after = pp.report()
    assert refund_lines(after, made["drop"]) == []
    (changed,) = refund_lines(after, made["change"])
    assert changed.gross == -1_999
    (failed,) = refund_lines(after, made["fail"], "refund_failure")
    assert (failed.gross, failed.raw_type) == (3_000, "T1106")
    assert len(refund_lines(after, made["fail"])) == 1
    twice = refund_lines(after, made["duplicate"])
    assert len(twice) == 2
    assert (twice[0].raw, twice[0].line_key) == (twice[1].raw, twice[1].line_key)
    (shifted,) = refund_lines(after, made["shift"])
    (plain,) = refund_lines(after, made["plain"])
    (shift_before,) = refund_lines(before, made["shift"])
    assert shifted.payout_id != plain.payout_id == shift_before.payout_id
    assert shifted.raw == shift_before.raw  # the same row, in the next day's section
    assert shifted.occurred_at == shift_before.occurred_at
    (outside,) = refund_lines(after, foreign["gateway_refund_id"])
    assert (outside.gross, outside.currency, outside.merchant_reference) == (-1_234, "JPY", None)
    assert outside.gateway_payment_id == jpy
    assert f",{stl_amount(1_234, 'JPY')}," in outside.raw
    assert refund_lines(after, made["plain"])[0].raw == refund_lines(before, made["plain"])[0].raw
    assert [line.raw for line in pp.report()[1]] == [line.raw for line in after]
    pp.control("POST", "/reset")
    assert pp.control("GET", "/discrepancies").json() == []


def test_discrepancies_on_paypal_refunds_that_never_settled_are_refused(pp: PayPalSide) -> None:
    capture = pp.payment(10_000, "EUR")
    pending, _ = pp.refund(capture, 100, status="pending")
    cases = [
        ({"gateway_refund_id": pending}, 409, "refund_not_settled"),
        ({"gateway_refund_id": "NOSUCHREFUND00000"}, 404, "unknown_refund"),
    ]
    for values, status, code in cases:
        response = pp.control(
            "POST", "/discrepancies", {"processor": "paypal", "kind": "drop_line", **values}
        )
        assert (response.status_code, response.json()["code"]) == (status, code)


def test_stl_amounts_are_x100_of_the_major_unit_in_every_exponent() -> None:
    assert [stl_amount(1_250, "EUR"), stl_amount(1_200, "JPY"), stl_amount(250_000, "HUF")] == [
        "1250",
        "120000",
        "250000",
    ]
    assert stl_amount(-1_250, "EUR") == "1250"  # unsigned: the side is in its own column


def test_the_simulators_report_code_never_imports_the_adapter() -> None:
    """STYLE rule 12: the simulator is an independent witness of the parser, not a copy of it."""
    source = Path(reports.__file__).read_text(encoding="utf-8")
    imports = [row for row in source.splitlines() if row.startswith(("import ", "from "))]
    assert not [row for row in imports if "refundwatch" in row or "gateways" in row]
