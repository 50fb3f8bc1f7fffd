"""Intake refuses an amount the payment's processor cannot take (``amount_not_supported``, 422), decided
by the adapter's ``check_amount`` (never by the processor's name), before anything is stored or sent."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from refundwatch.gateways.adyen import AdyenGateway
from refundwatch.gateways.base import amount_refusal
from refundwatch.gateways.paypal import PayPalGateway
from refundwatch.gateways.stripe import StripeGateway
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.refunds import intake
from refundwatch.refunds.schemas import RefundCreate


class Connections:
    def __init__(self, processor: str) -> None:
        self.info = SimpleNamespace(id=uuid.uuid4(), name=f"{processor}-x", processor=processor, enabled=True)

    async def by_id(self, _: uuid.UUID) -> Any:
        return self.info


def runtime(processor: str) -> Any:
    return SimpleNamespace(connections=Connections(processor))


def payment(currency: str) -> Any:
    return SimpleNamespace(
        connection_id=uuid.uuid4(),
        currency=currency,
        payment_reference="2GG279541U471931P",
        order_id=None,
        invoice_id=None,
    )


def body(amount: int, currency: str) -> RefundCreate:
    return RefundCreate(
        payment_reference="2GG279541U471931P",
        amount=amount,
        currency=currency,
        reason="requested_by_customer",
    )


@pytest.mark.parametrize(("amount", "currency"), [(150050, "HUF"), (2501, "TWD")])
async def test_paypal_refuses_amounts_it_cannot_take(amount: int, currency: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await intake._check_against_payment(runtime("paypal"), body(amount, currency), payment(currency))
    err = caught.value
    assert err.code == "amount_not_supported"
    assert err.status_code == 422
    assert "whole units" in err.message
    assert "\n" not in err.message


@pytest.mark.parametrize(
    ("processor", "amount", "currency"),
    [
        ("paypal", 150000, "HUF"),
        ("paypal", 1501, "JPY"),
        ("paypal", 1051, "KWD"),
        ("paypal", 1051, "EUR"),
        ("stripe", 150050, "HUF"),  # Stripe and Adyen take these: nothing refused
        ("stripe", 1_230, "KWD"),
        ("stripe", 1_500, "ISK"),
        ("adyen", 150050, "HUF"),
        ("adyen", 1_234, "KWD"),
        ("checkout", 5_120, "KWD"),
        ("checkout", 1_051, "EUR"),
    ],
)
async def test_other_amounts_pass(processor: str, amount: int, currency: str) -> None:
    await intake._check_against_payment(runtime(processor), body(amount, currency), payment(currency))


@pytest.mark.parametrize(("amount", "currency"), [(1_234, "KWD"), (5, "BHD"), (150, "MGA")])
async def test_stripe_refuses_amounts_it_cannot_take(amount: int, currency: str) -> None:
    """Stripe's three-decimal amounts must end in 0, and MGA is zero-decimal there."""
    with pytest.raises(ValidationFailed) as caught:
        await intake._check_against_payment(runtime("stripe"), body(amount, currency), payment(currency))
    assert caught.value.code == "amount_not_supported"
    assert currency in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(("amount", "currency"), [(5124, "KWD"), (1001, "BHD"), (1313, "OMR")])
async def test_checkout_refuses_three_decimal_amounts_not_ending_in_0(amount: int, currency: str) -> None:
    """Checkout.com ("Format the amount value"): for three-decimal currencies "the last digit must
    always be a 0"; such a refund was accepted, reserved, and then refused by the processor."""
    with pytest.raises(ValidationFailed) as caught:
        await intake._check_against_payment(runtime("checkout"), body(amount, currency), payment(currency))
    assert caught.value.code == "amount_not_supported"
    assert "end in 0" in caught.value.message
    assert "\n" not in caught.value.message


async def test_a_currency_mismatch_is_reported_first() -> None:
    with pytest.raises(ValidationFailed) as caught:
        await intake._check_against_payment(runtime("paypal"), body(150050, "HUF"), payment("EUR"))
    assert caught.value.code == "currency_mismatch"


def test_amount_refusal_comes_from_the_gateway() -> None:
    assert amount_refusal(PayPalGateway(), 150050, "HUF") is not None
    assert amount_refusal(StripeGateway(), 150050, "HUF") is None
    assert amount_refusal(AdyenGateway(), 150050, "HUF") is None
    assert amount_refusal(SimpleNamespace(check_amount=lambda a, c: "nope"), 1, "EUR") == "nope"
    assert amount_refusal(SimpleNamespace(check_amount=lambda a, c: ""), 1, "EUR") is None
