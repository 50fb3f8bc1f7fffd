"""Money and words as people read and type them: major units, thousands, exact parsing, labels, ids."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from refundwatch.lib.money import AmountError, format_amount, format_money, parse_amount, to_decimal_string
from refundwatch.web import labels
from refundwatch.web.templating import amount, money


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (60_000, "EUR", "600.00 EUR"),
        (120_000, "EUR", "1,200.00 EUR"),
        (123_456_789, "EUR", "1,234,567.89 EUR"),
        (5, "EUR", "0.05 EUR"),
        (0, "EUR", "0.00 EUR"),
        (-123_456, "EUR", "-1,234.56 EUR"),
        (-5, "EUR", "-0.05 EUR"),
        (1_200, "JPY", "1,200 JPY"),
        (999, "JPY", "999 JPY"),
        (-1_200_000, "JPY", "-1,200,000 JPY"),
        (1_250, "KWD", "1.250 KWD"),
        (1_234_567, "KWD", "1,234.567 KWD"),
        (1, "KWD", "0.001 KWD"),
    ],
)
def test_money_reads_in_major_units_with_thousands(minor: int, currency: str, text: str) -> None:
    assert format_money(minor, currency) == text
    assert money(minor, currency) == text


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("600.00", "EUR", 60_000),
        ("600", "EUR", 60_000),
        ("600.5", "EUR", 60_050),
        ("0.01", "EUR", 1),
        ("1,200.50", "EUR", 120_050),
        (" 1200.50 ", "EUR", 120_050),
        ("1200", "JPY", 1_200),
        ("1,200", "JPY", 1_200),
        ("1200.", "JPY", 1_200),
        ("1200.000", "JPY", 1_200),  # zeros after the point add no precision
        ("1.250", "KWD", 1_250),
        ("1.25", "KWD", 1_250),
        ("12", "KWD", 12_000),
        ("99999999999.99", "EUR", 9_999_999_999_999),
    ],
)
def test_typed_amounts_convert_exactly(typed: str, currency: str, minor: int) -> None:
    assert parse_amount(typed, currency) == minor


@pytest.mark.parametrize(
    ("typed", "currency", "says"),
    [
        ("600.005", "EUR", "EUR has at most 2 decimals"),
        ("1200.5", "JPY", "JPY has no decimals"),
        ("1.2505", "KWD", "KWD has at most 3 decimals"),
        ("-5", "EUR", "like 600.00"),
        ("1e3", "EUR", "like 600.00"),
        ("12,34", "EUR", "like 600.00"),  # a decimal comma is not guessed at
        ("1,500", "EUR", "could mean two amounts"),  # 1,500.00 or 1.50: it was taken as 1,500.00
        ("1,500", "KWD", "could mean two amounts"),
        ("", "JPY", "like 1200"),
        ("abc", "KWD", "like 600.000"),
        ("NaN", "EUR", "like 600.00"),
    ],
)
def test_typed_amounts_refused_with_what_to_type(typed: str, currency: str, says: str) -> None:
    with pytest.raises(AmountError, match=says):
        parse_amount(typed, currency)


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD", "BHD", "USD"])
def test_what_is_shown_is_typed_back_to_the_same_amount(currency: str) -> None:
    for minor in (1, 7, 999, 1_000, 123_456, 10**12 + 3):
        assert parse_amount(format_amount(minor, currency), currency) == minor
        assert parse_amount(amount(minor, currency), currency) == minor
        assert parse_amount(to_decimal_string(minor, currency), currency) == minor


def test_labels_keep_the_machine_word_on_hover() -> None:
    badge = labels.status_badge("pending_approval")
    assert 'title="pending_approval"' in badge
    assert "Waiting for approval" in badge
    assert "status-pending_approval" in badge
    assert labels.reason_label("requested_by_customer") == "Customer asked"
    assert labels.error_label("amount_exceeds_refundable") == "More than is left to refund"
    assert labels.error_label("some_new_code") == "Some new code"  # unknown words still read


def test_short_ids_come_from_the_random_end_of_a_uuid7() -> None:
    # Two ids made in the same millisecond share their start, not their end.
    a = uuid.UUID("0193a1b2-c3d4-7e5f-8a1b-2c3d4e5f6071")
    b = uuid.UUID("0193a1b2-c3d4-7e5f-9b2c-3d4e5f607182")
    assert labels.short_id(a) == "4e5f6071"
    assert labels.short_id(a) != labels.short_id(b)
    chip = labels.id_chip(a)
    assert f'title="{a}"' in chip
    assert f'data-copy="{a}"' in chip
    assert ">…4e5f6071<" in chip


def test_times_are_utc_on_hover_and_marked_for_the_viewers_zone() -> None:
    at = dt.datetime(2026, 12, 6, 5, 50, 41, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    html = labels.when(at)
    assert 'datetime="2026-12-06T04:50:41Z"' in html
    assert 'title="2026-12-06 04:50:41 UTC"' in html
    assert "data-local" in html
    assert labels.when(None) == "—"
    # Compact forms leave the zone to the tooltip; an ISO string (the audit chain's checkpoints) is a time.
    feed = labels.when(at, "time", hover="created ")
    assert 'data-local="time">04:50:41 UTC<' in feed
    assert 'title="created 2026-12-06 04:50:41 UTC"' in feed
    assert 'data-local="date-hm">2026-12-06 04:50 UTC<' in labels.when(at, "date-hm")
    assert 'datetime="2026-12-06T04:50:41Z"' in labels.when("2026-12-06T04:50:41Z")
    assert labels.when("<not a time>") == "&lt;not a time&gt;"


def test_one_currency_per_number_of_decimals_for_a_figure_in_minor_units() -> None:
    from refundwatch.lib.money import one_per_exponent

    assert one_per_exponent(["usd", "EUR", "JPY", "ISK", "KWD", "BHD"]) == ["USD", "JPY", "KWD"]
    assert one_per_exponent([]) == []


def test_the_currencies_the_approval_threshold_names() -> None:
    from refundwatch.config import Settings

    assert Settings(approval_threshold="50000").approval_threshold_currencies == []
    named = Settings(approval_threshold="usd:50000, *:40000,JPY:500000")
    assert named.approval_threshold_currencies == ["USD", "JPY"]
