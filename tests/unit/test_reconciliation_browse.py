"""The /reconciliation filter and the unreconciled amount of a break, without a database."""

from __future__ import annotations

import uuid

import pytest

from refundwatch.db.models import ReconciliationBreak
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.reconciliation import browse
from refundwatch.reconciliation.resolving import checked_form


def test_the_filter_defaults_to_open_breaks_and_keeps_only_what_it_knows() -> None:
    q = browse.parse([("kind", "amount_mismatch"), ("currency", " eur "), ("age", "1d_to_7d"), ("x", "y")])
    assert (q.kind, q.currency, q.age, q.status, q.errors) == (
        "amount_mismatch",
        "EUR",
        "1d_to_7d",
        "open",
        [],
    )
    assert q.query() == "kind=amount_mismatch&currency=EUR&age=1d_to_7d"
    cursor = uuid.uuid4()
    assert browse.parse([("before", str(cursor))]).before == cursor


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "nope"), ("status", "closed"), ("currency", "EURO"), ("age", "2y"), ("before", "zzz")],
)
def test_a_bad_value_is_an_error_not_a_guess(field: str, value: str) -> None:
    q = browse.parse([(field, value)])
    assert len(q.errors) == 1
    assert q.form.get(field, value).upper() == value.upper()  # shown back as typed


@pytest.mark.parametrize(
    ("kind", "expected", "actual", "currency", "amount"),
    [
        ("amount_mismatch", 3_000, 2_999, "EUR", 1),  # the difference
        ("over_refunded", 10_000, 12_500, "EUR", 2_500),
        ("missing_local", None, 1_234, "EUR", 1_234),  # the whole line
        ("missing_settlement", 800, None, "JPY", 800),  # the whole refund
        ("reversed_after_success", 500, 500, "EUR", 500),
        ("unmapped", None, None, None, 0),
    ],
)
def test_what_a_break_leaves_unreconciled(
    kind: str, expected: int | None, actual: int | None, currency: str | None, amount: int
) -> None:
    found = ReconciliationBreak(kind=kind, expected=expected, actual=actual, currency=currency)
    assert browse.unreconciled_of(found) == amount


def test_resolving_needs_a_known_resolution_a_reason_and_for_a_link_a_refund_id() -> None:
    refund = uuid.uuid4()
    assert checked_form("linked", "seen in the Dashboard", str(refund)) == ("seen in the Dashboard", refund)
    assert checked_form("written_off", "small", "ignored") == ("small", None)
    for resolution, reason, refund_text, code in [
        ("maybe", "x", "", "invalid_resolution"),
        ("accepted", "", "", "reason_required"),
        ("accepted", "x" * 1001, "", "reason_too_long"),
        ("linked", "x", "", "refund_required"),
        ("linked", "x", "r-1", "invalid_refund_id"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            checked_form(resolution, reason, refund_text)
        assert refused.value.code == code
