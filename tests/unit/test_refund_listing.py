"""The refunds list's query-string filters and the CSV cell rules, without a server."""

from __future__ import annotations

import datetime as dt

import pytest

from refundwatch.lib.csvcells import cell as safe_cell
from refundwatch.refunds.export import filename
from refundwatch.refunds.listing import parse_listing


def test_every_filter_parsed_and_written_back_in_a_stable_order() -> None:
    listing = parse_listing(
        [
            ("to", "2026-11-01"),
            ("status", "failed"),
            ("q", " pi_1 "),
            ("status", "succeeded"),
            ("status", "failed"),
            ("status", ""),
            ("min_amount", "12.5"),
            ("currency", "eur"),
            ("error", "declined"),
            ("from", "2026-10-01T08:30"),
            ("cursor", "0190f5a4-0000-7000-8000-000000000000"),
            ("unknown", "ignored"),
        ]
    )
    assert listing.errors == []
    f = listing.filter
    assert f.statuses == ("failed", "succeeded")
    assert f.q == "pi_1"
    assert (f.currency, f.min_amount, f.max_amount) == ("EUR", 1250, None)
    assert f.error == "declined"
    assert f.created_after == dt.datetime(2026, 10, 1, 8, 30, tzinfo=dt.UTC)
    assert f.created_before == dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # the whole day typed
    assert f.cursor == "0190f5a4-0000-7000-8000-000000000000"
    assert listing.query() == (
        "status=failed&status=succeeded&q=pi_1&error=declined&currency=eur&min_amount=12.5"
        "&from=2026-10-01T08%3A30&to=2026-11-01"
    )
    assert "cursor=" in listing.query(cursor="abc")
    assert listing.summary()["status"] == ["failed", "succeeded"]


@pytest.mark.parametrize(
    ("typed", "after", "before"),
    [
        ("2026-11-01", dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 2)),
        ("2026-11-01T10:15", dt.datetime(2026, 11, 1, 10, 15), dt.datetime(2026, 11, 1, 10, 16)),
        ("2026-11-01 10:15:30", dt.datetime(2026, 11, 1, 10, 15, 30), dt.datetime(2026, 11, 1, 10, 15, 31)),
        ("2026-11-01T10:15Z", dt.datetime(2026, 11, 1, 10, 15), dt.datetime(2026, 11, 1, 10, 16)),
    ],
)
def test_from_starts_at_and_to_includes_the_unit_typed(
    typed: str, after: dt.datetime, before: dt.datetime
) -> None:
    f = parse_listing([("from", typed), ("to", typed)]).filter
    assert f.created_after == after.replace(tzinfo=dt.UTC)
    assert f.created_before == before.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("currency", "typed", "minor"),
    [("", "12.50", 1250), ("", "12", 1200), ("", "0.01", 1), ("JPY", "500", 500), ("KWD", "1.005", 1005)],
)
def test_amounts_are_major_units_in_the_currency_exponent(currency: str, typed: str, minor: int) -> None:
    listing = parse_listing([("currency", currency), ("min_amount", typed), ("max_amount", typed)])
    assert listing.errors == []
    assert (listing.filter.min_amount, listing.filter.max_amount) == (minor, minor)


@pytest.mark.parametrize(
    "params",
    [
        [("min_amount", "1,50")],
        [("min_amount", "NaN")],
        [("min_amount", " -1")],
        [("max_amount", "1.001")],
        [("currency", "JPY"), ("max_amount", "1.5")],
        [("status", "nope")],
        [("reason", "nope")],
        [("currency", "EURO")],
        [("from", "2026-02-30")],
        [("to", "9999-12-31")],  # its end is past the largest date
        [("from", "2026-11-01T10:00"), ("to", "2026-11-01T09:59")],
        [("cursor", "nope")],
        [("error", "a\x00b")],
    ],
)
def test_unusable_values_become_messages_not_filters(params: list[tuple[str, str]]) -> None:
    listing = parse_listing(params)
    assert listing.errors
    assert listing.filter.limit == 50
    assert listing.filter.statuses == ()  # the default: nothing from a refused request is used


def test_old_payment_parameter_is_the_search_box() -> None:
    assert parse_listing([("payment", "pi_1")]).filter.q == "pi_1"
    assert parse_listing([("payment", "pi_1"), ("q", "ord_2")]).filter.q == "ord_2"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("pi_1=2", "pi_1=2"),
        (None, ""),
        (1250, 1250),
        (dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC), "2026-11-01T10:00:00+00:00"),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, cell: object) -> None:
    assert safe_cell(value) == cell


def test_export_file_name_is_a_utc_timestamp() -> None:
    at = dt.datetime(2026, 11, 1, 12, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert filename(at) == "refunds-20261101T103005Z.csv"


def test_sort_is_kept_in_links_and_its_cursor_shape_checked() -> None:
    listing = parse_listing(
        [("q", "pi_1"), ("sort", "amount_desc"), ("cursor", "1250.0190f5a4-0000-7000-8000-000000000000")]
    )
    assert listing.errors == []
    assert listing.filter.sort == "amount_desc"
    assert listing.query() == "q=pi_1&sort=amount_desc"
    assert listing.sorted_by("newest") == "q=pi_1"  # the default order is not written out
    assert listing.sorted_by("oldest") == "q=pi_1&sort=oldest"
    # An id alone is no cursor for an amount order, nor is an unknown order accepted.
    assert parse_listing(
        [("sort", "amount_asc"), ("cursor", "0190f5a4-0000-7000-8000-000000000000")]
    ).errors == ["cursor is not valid"]
    assert parse_listing([("sort", "sideways")]).errors == ["unknown sort 'sideways'"]
    assert parse_listing([]).filter.sort == "newest"
