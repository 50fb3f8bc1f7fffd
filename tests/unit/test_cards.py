"""Card numbers in free text (lib.cards): what is found, what is not, and the refusal's wording."""

from __future__ import annotations

import pytest

from refundwatch.lib.cards import (
    card_number_spans,
    find_card_number,
    luhn_valid,
    mask_card_numbers,
    refuse_card_numbers,
)
from refundwatch.lib.exceptions import ValidationFailed

# Published test numbers of the card networks (Luhn-valid, 13 to 19 digits).
TEST_CARDS = [
    "4242424242424242",  # Visa
    "4111111111111111",  # Visa
    "4222222222222",  # Visa, 13 digits
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express, 15 digits
    "6011111111111117",  # Discover
    "3056930009020004",  # Diners Club
    "6200000000000005",  # UnionPay
    "6250941006528599",  # UnionPay
    "4000000000000000006",  # 19 digits
]


def test_luhn() -> None:
    assert all(luhn_valid(card) for card in TEST_CARDS)
    assert not luhn_valid("4242424242424241")
    assert not luhn_valid("1234567812345678")


@pytest.mark.parametrize("card", TEST_CARDS)
@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "refund for card {} pls",
        "card:{}",
        "#{}.",
        "pi_{}",
        "ORD{}",  # glued to a word that is not hexadecimal
        "({})",
        "line one\n{}\nline three",
    ],
)
def test_found_in_text(card: str, template: str) -> None:
    assert find_card_number(template.format(card))


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242\u00a04242\u00a04242\u00a04242",
        "3782 822463 10005",  # American Express grouping
        "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
        "4242 4242-4242 4242",
        "qty 2 4111 1111 1111 1111 exp 12 25",  # other numbers written right next to it
        "4111 1111 1111 1111 123",  # followed by a security code
        "2024-05-01 4111111111111111",  # a date next to it does not hide it
    ],
)
def test_found_with_separators(text: str) -> None:
    assert find_card_number(text)
    assert mask_card_numbers(text).count("[card number]") == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "order 12345",
        "4242424242424241",  # Luhn-invalid
        "4242 4242 4242 4241",
        "424242424242",  # 12 digits
        "41111111111111111234",  # 20 unbroken digits: not a card number, and not searched inside
        "4242  4242  4242  4242",  # two separators between groups: four separate numbers
        "4242--4242--4242--4242",
        "550e8400-e29b-41d4-a716-446655440000",
        "12345678-1234-1234-1234-123456789012",  # a UUID made of digits only
        "12345678-1234-4123-a567-123456789abc",  # a UUID whose first groups are all digits
        "id 00000000-0000-4000-8000-000000000000.",
        "deadbeef4111111111111111",  # part of a hexadecimal string (a hash, a token)
        "4111111111111111cafe",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "from 2024-01-15 2024-02-20",
        "2024-01-15 10:30:00.123456",
        "\u0664\u0661\u0661\u0661" * 4,  # non-ASCII digits are not what card numbers are written in
    ],
)
def test_not_found(text: str) -> None:
    assert not find_card_number(text)
    assert mask_card_numbers(text) == text


def test_uuids_are_never_card_numbers() -> None:
    import uuid

    for _ in range(2000):
        assert not find_card_number(str(uuid.uuid4()))


def test_mask_keeps_everything_else() -> None:
    text = "card 4242 4242 4242 4242, then 5555-5555-5555-4444 and order 12345."
    assert mask_card_numbers(text) == "card [card number], then [card number] and order 12345."
    assert len(card_number_spans(text)) == 2
    assert mask_card_numbers(text, "X") == "card X, then X and order 12345."


def test_luhn_valid_order_ids_are_refused_too() -> None:
    """Accepted behaviour: an order id that is a Luhn-valid 16-digit number is a card number for us."""
    assert find_card_number("1000000000000008")


def test_refuse_names_the_field_not_the_value() -> None:
    refuse_card_numbers({"order_id": "ORD-1", "invoice_id": None, "metadata.note": "hello"})
    with pytest.raises(ValidationFailed) as caught:
        refuse_card_numbers({"order_id": "ORD-1", "metadata.note": "card 4242 4242 4242 4242"})
    error = caught.value
    assert error.code == "card_number_refused"
    assert error.status_code == 422
    assert error.message.startswith("metadata.note looks like it contains a payment card number")
    assert "never stored" in error.message
    for text in (error.message, str(error), repr(error), repr(error.extra)):
        assert "4242" not in text
