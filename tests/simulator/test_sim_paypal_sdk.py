"""The official paypal-server-sdk 2.4.0, pointed at the simulator, is the witness of its PayPal API:
a token, a refund, the refund read back, the capture, and PayPal's errors as the SDK's own exceptions."""

from __future__ import annotations

import json
import uuid

import pytest
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.models.money import Money
from paypalserversdk.models.refund_request import RefundRequest

from .conftest import Simulator
from .paypal_kit import (
    CLIENT_ID,
    capture,
    paypal_cert_dir,
    paypal_receiver,
    paypal_simulator_process,
    psim,
    sdk_client,
)

__all__ = ["paypal_cert_dir", "paypal_receiver", "paypal_simulator_process", "psim"]


def issued_tokens(sim: Simulator) -> int:
    issued: int = sim.control("GET", "/paypal/tokens").json()["issued"]
    return issued


def _refund(value: str, currency: str = "EUR", **extra: str) -> RefundRequest:
    return RefundRequest(amount=Money(currency_code=currency, value=value), **extra)


def test_sdk_gets_a_token_refunds_a_capture_and_reads_it_back(psim: Simulator) -> None:
    capture_id = capture(psim, 10_000, "EUR")
    issued = issued_tokens(psim)
    payments = sdk_client(psim).payments
    request_id = str(uuid.uuid4())
    created = payments.refund_captured_payment(
        {
            "capture_id": capture_id,
            "paypal_request_id": request_id,
            "prefer": "return=representation",
            "body": _refund("25.50", invoice_id=request_id, custom_id="rf_0001", note_to_payer="Damaged"),
        }
    )
    assert created.status_code == 201
    refund = created.body
    assert refund.status == "COMPLETED"
    assert (refund.amount.currency_code, refund.amount.value) == ("EUR", "25.50")
    assert (refund.invoice_id, refund.custom_id, refund.note_to_payer) == (request_id, "rf_0001", "Damaged")
    assert {link.rel for link in refund.links} == {"self", "up"}

    read = payments.get_refund({"refund_id": refund.id})
    assert read.status_code == 200
    assert (read.body.id, read.body.status, read.body.amount.value) == (refund.id, "COMPLETED", "25.50")

    captured = payments.get_captured_payment({"capture_id": capture_id})
    assert (captured.body.status, captured.body.amount.value) == ("PARTIALLY_REFUNDED", "100.00")
    assert psim.ledger("paypal") == [
        {
            "processor": "paypal",
            "payment_reference": capture_id,
            "gateway_refund_id": refund.id,
            "idempotency_key": request_id,
            "amount": 2_550,
            "currency": "EUR",
            "status": "succeeded",
        }
    ]
    assert issued_tokens(psim) == issued + 1  # the SDK kept its token for the three calls


def test_sdk_minimal_answer_by_default(psim: Simulator) -> None:
    capture_id = capture(psim)
    created = sdk_client(psim).payments.refund_captured_payment(
        {"capture_id": capture_id, "body": _refund("1.00")}
    )
    assert created.status_code == 201
    assert set(json.loads(created.text)) == {"id", "status", "links"}


def test_sdk_over_refund_and_fully_refunded_are_its_error_exception(psim: Simulator) -> None:
    capture_id = capture(psim, 5_000, "USD")
    payments = sdk_client(psim).payments
    with pytest.raises(ErrorException) as caught:
        payments.refund_captured_payment({"capture_id": capture_id, "body": _refund("50.01", "USD")})
    assert caught.value.response_code == 422
    assert caught.value.name == "UNPROCESSABLE_ENTITY"
    assert [d.issue for d in caught.value.details] == ["REFUND_AMOUNT_EXCEEDED"]
    assert caught.value.debug_id

    payments.refund_captured_payment({"capture_id": capture_id, "body": _refund("50.00", "USD")})
    assert payments.get_captured_payment({"capture_id": capture_id}).body.status == "REFUNDED"
    with pytest.raises(ErrorException) as caught:
        payments.refund_captured_payment({"capture_id": capture_id, "body": _refund("0.01", "USD")})
    assert [d.issue for d in caught.value.details] == ["CAPTURE_FULLY_REFUNDED"]
    assert len(psim.ledger("paypal")) == 1


@pytest.mark.parametrize(
    ("currency", "value", "issue"),
    [
        ("JPY", "1500.5", "DECIMALS_NOT_SUPPORTED"),
        ("HUF", "1500.00", "DECIMALS_NOT_SUPPORTED"),
        ("TWD", "10.5", "DECIMALS_NOT_SUPPORTED"),
        ("EUR", "10.005", "DECIMAL_PRECISION"),
        ("EUR", "0.00", "CANNOT_BE_ZERO_OR_NEGATIVE"),
        ("GBP", "1.00", "REFUND_CAPTURE_CURRENCY_MISMATCH"),
    ],
)
def test_sdk_amounts_paypal_cannot_take(psim: Simulator, currency: str, value: str, issue: str) -> None:
    capture_id = capture(psim, 1_000_000, "EUR" if currency in {"EUR", "GBP"} else currency)
    with pytest.raises(ErrorException) as caught:
        sdk_client(psim).payments.refund_captured_payment(
            {"capture_id": capture_id, "body": _refund(value, currency)}
        )
    assert caught.value.response_code == 422
    assert [d.issue for d in caught.value.details] == [issue]
    assert psim.ledger("paypal") == []


def test_sdk_whole_units_for_currencies_without_decimals(psim: Simulator) -> None:
    jpy, huf = capture(psim, 5_000, "JPY"), capture(psim, 500_000, "HUF")
    payments = sdk_client(psim).payments
    payments.refund_captured_payment({"capture_id": jpy, "body": _refund("1500", "JPY")})
    payments.refund_captured_payment({"capture_id": huf, "body": _refund("1500", "HUF")})
    amounts = {row["currency"]: row["amount"] for row in psim.ledger("paypal")}
    assert amounts == {"JPY": 1_500, "HUF": 150_000}  # ISO minor units: HUF has two decimals there


def test_sdk_unknown_capture_is_resource_not_found(psim: Simulator) -> None:
    with pytest.raises(ErrorException) as caught:
        sdk_client(psim).payments.refund_captured_payment(
            {"capture_id": "NOSUCHCAPTURE0000", "body": _refund("1.00")}
        )
    assert caught.value.response_code == 404
    assert caught.value.name == "RESOURCE_NOT_FOUND"
    assert [d.issue for d in caught.value.details] == ["INVALID_RESOURCE_ID"]


def test_sdk_with_a_wrong_secret_gets_no_token(psim: Simulator) -> None:
    client = sdk_client(psim, CLIENT_ID, "not-the-secret")
    issued = issued_tokens(psim)
    # The SDK swallows the token call's 401 and refuses to call the API without a token.
    with pytest.raises(AuthValidationException, match="OAuthToken is undefined or expired"):
        client.payments.get_refund({"refund_id": "ANY"})
    assert issued_tokens(psim) == issued


def test_sdk_finds_a_captures_refunds_through_its_order(psim: Simulator) -> None:
    """PayPal's one place listing a capture's refunds: the order named by the capture's related ids
    (how a refund whose answer was lost can be found by its invoice_id)."""
    capture_id = capture(psim, 10_000, "EUR")
    client = sdk_client(psim)
    for invoice in ("inv-a", "inv-b"):
        client.payments.refund_captured_payment(
            {
                "capture_id": capture_id,
                "body": _refund("10.00", invoice_id=invoice, custom_id="rf_" + invoice),
            }
        )
    captured = client.payments.get_captured_payment({"capture_id": capture_id}).body
    order_id = captured.supplementary_data.related_ids.order_id
    order = client.orders.get_order({"id": order_id}).body
    assert order.id == order_id
    [unit] = order.purchase_units
    assert [c.id for c in unit.payments.captures] == [capture_id]
    assert sorted(r.invoice_id for r in unit.payments.refunds) == ["inv-a", "inv-b"]
    assert {r.id for r in unit.payments.refunds} == {
        row["gateway_refund_id"] for row in psim.ledger("paypal")
    }
    with pytest.raises(ErrorException) as caught:
        client.payments.get_captured_payment({"capture_id": order_id})  # an order id is no capture id
    assert caught.value.response_code == 404
