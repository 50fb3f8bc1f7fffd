"""The audit screen's pure parts: filters from the query string, readable details, a stuck sealer."""

from __future__ import annotations

import datetime as dt

from refundwatch.audit import browse
from refundwatch.audit.checkpoint import ChainState


def test_filters_parse_times_as_utc_and_refuse_what_they_cannot_read() -> None:
    f = browse.parse([("since", "2026-12-01T10:00"), ("until", "2026-12-02T10:00+01:00"), ("action", " x ")])
    assert f.since == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    assert f.until == dt.datetime(2026, 12, 2, 9, tzinfo=dt.UTC)
    assert f.form["until"] == "2026-12-02T09:00:00Z"  # links and exports carry UTC, with its Z
    assert f.action == "x"
    assert not f.errors
    bad = browse.parse([("since", "soon"), ("actor_type", "robot"), ("before", "x1")])
    assert len(bad.errors) == 3


def test_a_search_matches_literally() -> None:
    (term,) = browse.conditions(browse.parse([("q", "50%_off")]))
    assert "'%50\\%\\_off%'" in str(term.compile(compile_kwargs={"literal_binds": True}))


def test_details_read_as_people_read_them() -> None:
    lines = browse.details_of('{"from":"queued","to":"submitting","trigger":"submit","detail":"a \\u2192 b"}')
    assert [(d.key, d.text) for d in lines] == [
        ("status", "queued → submitting"),
        ("trigger", "submit"),
        ("detail", "a → b"),
    ]
    (amount, reason) = browse.details_of('{"amount":60000,"currency":"EUR","reason":"return"}')
    assert (amount.key, amount.amount, amount.currency) == ("amount", 60000, "EUR")
    assert (reason.key, reason.text) == ("reason", "return")
    nested = browse.details_of('{"filter":{"q":"x","status":["failed","reversed"]},"ok":true}')
    assert [(d.key, d.text) for d in nested] == [("filter", "q: x; status: failed, reversed"), ("ok", "yes")]
    assert browse.details_of("not json")[0].text == "not json"


def test_an_entry_left_unsealed_for_a_minute_means_sealing_stopped() -> None:
    now = dt.datetime.now(dt.UTC)
    fresh = ChainState(5, 1, None, None, None, None, (6, now))
    stuck = ChainState(5, 1, None, None, None, None, (6, now - dt.timedelta(minutes=2)))
    assert not fresh.sealing_stuck
    assert stuck.sealing_stuck
    assert not ChainState(5, 0, None, None, None, None).sealing_stuck
