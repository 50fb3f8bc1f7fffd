"""Minor units <-> PayPal's decimal strings, with PayPal's no-decimal currencies (HUF, JPY, TWD)."""

from __future__ import annotations

import pytest

from refundwatch.gateways.paypal import transformers as tx


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [
        (1050, "EUR", "10.50"),
        (5, "USD", "0.05"),
        (100, "GBP", "1.00"),
        (1500, "JPY", "1500"),  # ISO exponent 0
        (1, "JPY", "1"),
        (150000, "HUF", "1500"),  # ISO exponent 2, no decimals at PayPal
        (100, "HUF", "1"),
        (2500, "TWD", "25"),
        (1050, "KWD", "1.050"),  # ISO exponent 3
        (1, "BHD", "0.001"),
        (99, "huf".upper(), None),
    ],
)
def test_to_paypal_value(amount: int, currency: str, value: str | None) -> None:
    if value is None:
        with pytest.raises(ValueError, match="whole units"):
            tx.to_paypal_value(amount, currency)
        return
    assert tx.to_paypal_value(amount, currency) == value
    assert tx.from_paypal_value(value, currency) == amount  # and back


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("10.50", "EUR", 1050),
        ("10.5", "EUR", 1050),
        ("10", "EUR", 1000),
        ("1500", "JPY", 1500),
        ("1500", "HUF", 150000),
        ("1.050", "KWD", 1050),
        ("1.05", "KWD", 1050),
        ("10.505", "EUR", None),  # more decimals than the currency has
        ("1.5", "JPY", None),
        ("10,50", "EUR", None),
        ("NaN", "EUR", None),
        ("Infinity", "EUR", None),
        ("", "EUR", None),
        ("1" * 33, "EUR", None),  # longer than Money.value's 32
        (10.5, "EUR", None),  # a number, not PayPal's string
    ],
)
def test_from_paypal_value(value: object, currency: str, minor: int | None) -> None:
    assert tx.from_paypal_value(value, currency) == minor


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        ({"currency_code": "EUR", "value": "10.50"}, (1050, "EUR")),
        ({"currency_code": "jpy", "value": "1500"}, (1500, "JPY")),
        ({"currency_code": "EUR"}, None),
        ({"value": "1.00"}, None),
        ({"currency_code": "EURO", "value": "1.00"}, None),
        ("10.50 EUR", None),
    ],
)
def test_parse_money(data: object, parsed: tuple[int, str] | None) -> None:
    assert tx.parse_money(data) == parsed


def test_paypal_exponent() -> None:
    assert {c: tx.paypal_exponent(c) for c in ("HUF", "JPY", "TWD", "EUR", "KWD", "huf")} == {
        "HUF": 0,
        "JPY": 0,
        "TWD": 0,
        "EUR": 2,
        "KWD": 3,
        "huf": 0,
    }


def test_amount_refusal_only_where_paypal_drops_decimals() -> None:
    assert tx.amount_refusal(150001, "HUF") is not None
    assert tx.amount_refusal(150001, "huf") is not None
    assert tx.amount_refusal(150000, "HUF") is None
    for currency in ("EUR", "JPY", "KWD", "USD"):
        assert tx.amount_refusal(150001, currency) is None
