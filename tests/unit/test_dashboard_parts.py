"""The dashboard's pure parts: histogram maths, the outbox tally, views, charts, gateway state, breaker."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from types import SimpleNamespace

import pytest

from refundwatch.dashboard import svg
from refundwatch.dashboard.rollups import bucket_of, histogram_slot, quantile, tally
from refundwatch.dashboard.uptime import decide_state, honest_uptimes
from refundwatch.dashboard.views import RANGES, View
from refundwatch.db.models._stats import BUCKETS, LATENCY_BOUNDS_MS
from refundwatch.refunds.breaker import Breaker

T0 = dt.datetime(2026, 11, 24, 10, 17, 42, 123456, tzinfo=dt.UTC)


def test_buckets_truncate_to_the_minute_and_the_hour() -> None:
    assert bucket_of(T0, "m") == dt.datetime(2026, 11, 24, 10, 17, tzinfo=dt.UTC)
    assert bucket_of(T0, "h") == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize(("ms", "slot"), [(0, 0), (25, 0), (26, 1), (100, 3), (7_200_000, 14), (10**9, 15)])
def test_histogram_slots_follow_the_upper_bounds(ms: int, slot: int) -> None:
    assert histogram_slot(ms) == slot


def test_quantiles_interpolate_inside_the_bucket() -> None:
    hist = [0] * BUCKETS
    hist[3] = 100  # all between 75 and 100 ms
    assert quantile(hist, 0.5) == pytest.approx(87.5)
    assert quantile(hist, 0.99) == pytest.approx(99.75)
    assert quantile([0] * BUCKETS, 0.5) is None
    open_ended = [0] * BUCKETS
    open_ended[-1] = 5
    assert quantile(open_ended, 0.5) == LATENCY_BOUNDS_MS[-1], "beyond the last bound: 'more than'"


def _refund(**values: object) -> SimpleNamespace:
    base = {
        "connection_id": uuid.UUID(int=1),
        "created_at": T0,
        "accepted_at": T0 + dt.timedelta(milliseconds=60),
        "error_code": None,
        "processor_code": None,
    }
    return SimpleNamespace(**(base | values))


def test_the_tally_counts_outcomes_with_their_times_in_both_resolutions() -> None:
    ok, refused, pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    refunds = {
        ok: _refund(),
        refused: _refund(accepted_at=None, error_code="declined", processor_code="expired_card"),
        pending: _refund(),
    }
    at = T0 + dt.timedelta(milliseconds=80)
    outbox = [
        SimpleNamespace(refund_id=ok, from_status="submitting", status="succeeded", at=at),
        SimpleNamespace(refund_id=refused, from_status="submitting", status="failed", at=at),
        SimpleNamespace(refund_id=pending, from_status="submitting", status="processing", at=at),
        SimpleNamespace(refund_id=uuid.uuid4(), from_status="submitting", status="failed", at=at),  # gone
    ]
    tallies = tally(outbox, refunds)
    assert len(tallies) == 9, "three keys, three resolutions"
    minute = {key[3]: value for key, value in tallies.items() if key[0] == "m"}
    assert minute["succeeded"].n == 1
    assert sum(minute["succeeded"].final) == 1, "request → final counted"
    assert sum(minute["succeeded"].accept) == 1, "straight to success is also an acceptance"
    assert sum(minute["accepted"].accept) == 1
    assert sum(minute["accepted"].final) == 0
    failed_key = next(key for key in tallies if key[0] == "m" and key[3] == "failed")
    assert failed_key[4:] == ("declined", "expired_card")
    assert sum(minute["failed"].accept) == 0


def test_views_are_lenient_and_shareable() -> None:
    view = View.parse("24h", "stripe-eu", {"stripe-eu"})
    assert view.query() == "range=24h&connection=stripe-eu"
    assert View.from_key(view.key) == view
    assert View.parse("1y", "gone", {"stripe-eu"}) == View(RANGES["1h"], None)
    start, _end = View(RANGES["24h"], None).window(T0)
    assert start == dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC), "aligned to whole hour buckets"


def test_charts_escape_text_and_keep_gaps() -> None:
    chart = svg.sparkline([1.0, None, 2.0, 3.0], low=0, high=3, label="<script>")
    assert "<script>" not in chart.svg
    assert "&lt;script&gt;" in chart.svg
    assert chart.svg.count("<polyline") == 1, "the gap splits the line; a lone point is a dot"
    assert "<circle" in chart.svg
    assert "From 1.0 to 3.0" in chart.summary
    assert chart.note is None
    empty = svg.histogram([0] * BUCKETS, ["x"] * BUCKETS, label="none")
    assert "No finished refunds" in empty.summary


@pytest.mark.parametrize(
    ("args", "kwargs", "state"),
    [
        ((True, 100, 50, 0, 2000), {}, "up"),
        ((False, 0, 0, 0, 2000), {}, "down"),
        ((True, 100, 10, 8, 2000), {}, "down"),
        ((True, 100, 10, 8, 2000), {"recovered": True}, "degraded"),
        ((True, 100, 100, 1, 2000), {}, "up"),
        ((True, 100, 40, 3, 2000), {}, "degraded"),
        ((True, 5000, 0, 0, 2000), {}, "degraded"),
        ((None, None, 0, 0, 2000), {}, "unknown"),
    ],
)
def test_gateway_state(args: tuple[object, ...], kwargs: dict[str, bool], state: str) -> None:
    assert decide_state(*args, **kwargs)[0] == state  # type: ignore[arg-type]


def test_the_breaker_opens_after_failures_in_a_row_and_probes_before_closing() -> None:
    connection = uuid.uuid4()
    breaker = Breaker(threshold=3, open_seconds=0.05)
    breaker.record(connection, ok=False)
    breaker.record(connection, ok=False)
    breaker.record(connection, ok=True)  # not in a row
    breaker.record(connection, ok=False)
    breaker.record(connection, ok=False)
    assert not breaker.any_open
    breaker.record(connection, ok=False)
    assert breaker.is_open(connection)
    probes: list[bool] = []

    async def probe_fails() -> bool:
        probes.append(False)
        return False

    async def probe_works() -> bool:
        probes.append(True)
        return True

    async def scenario() -> None:
        assert await breaker.wait_for(connection, probe_works) is not None, "still open: no probe yet"
        assert probes == []
        await asyncio.sleep(0.06)
        assert await breaker.wait_for(connection, probe_fails) is not None
        await asyncio.sleep(0.06)
        assert await breaker.wait_for(connection, probe_works) is None
        assert not breaker.any_open

    asyncio.run(scenario())
    assert probes == [False, True]


def test_day_windows_are_stitched_from_hours_then_days() -> None:
    from sqlalchemy.dialects import postgresql

    from refundwatch.dashboard.rollups import span
    from refundwatch.db.tables import STATS

    since = dt.datetime(2026, 11, 17, 10, tzinfo=dt.UTC)
    clause = span(STATS, "d", since).compile(dialect=postgresql.dialect())
    sql = str(clause)
    assert sql.count("refund_stats.res =") == 2, sql
    values = list(clause.params.values())
    assert "h" in values
    assert "d" in values
    assert dt.datetime(2026, 11, 18, tzinfo=dt.UTC) in values, "hours until the first midnight, days after"
    minute = span(STATS, "m", since).compile(dialect=postgresql.dialect())
    assert str(minute).count("refund_stats.res =") == 1
    start, _ = View(RANGES["7d"], None).window(T0)
    assert start == dt.datetime(2026, 11, 17, 10, tzinfo=dt.UTC), "a day window starts on the hour"


def test_rate_colours_are_judged_as_shown() -> None:
    from refundwatch.dashboard.panels import level_of

    assert level_of(0.9797, 0.98, 0.95) == "ok", "shown as 98.0%"
    assert level_of(0.9794, 0.98, 0.95) == "warn", "shown as 97.9%"
    assert level_of(0.9494, 0.98, 0.95) == "bad"
    assert level_of(None, 0.98, 0.95) == "none"


def test_a_sparkline_needs_enough_points_or_says_why_it_has_none() -> None:
    two = svg.sparkline([None, 1.0, None, 2.0], low=0, high=2, label="rate", interval="1 min")
    assert "<polyline" not in two.svg
    assert "<circle" not in two.svg
    assert two.note == "No line yet: data for 2 intervals of 1 min; a line needs at least 3."
    assert two.note in two.svg  # the chart's own description says it too
    nothing = svg.sparkline([None] * 5, low=0, high=1, label="rate")
    assert nothing.note == "No line yet: no finished interval has data; a line needs 3."


FIGURES = {"24h": 0.99, "7d": 0.99, "30d": 0.99}


@pytest.mark.parametrize(
    ("age", "shown"),
    [
        (dt.timedelta(minutes=5), [("24h", "since 10:12 UTC")]),
        (dt.timedelta(days=3), [("24h", "24h"), ("7d", "since 2026-11-21 10:17 UTC")]),
        (dt.timedelta(days=10), [("24h", "24h"), ("7d", "7d"), ("30d", "since 2026-11-14 10:17 UTC")]),
        (dt.timedelta(days=40), [("24h", "24h"), ("7d", "7d"), ("30d", "30d")]),
    ],
)
def test_uptime_on_a_young_installation_says_since_when_instead_of_repeating_itself(
    age: dt.timedelta, shown: list[tuple[str, str]]
) -> None:
    figures = honest_uptimes(FIGURES, T0 - age, T0)
    assert [(u.key, u.label) for u in figures] == shown
    assert [u.since is not None for u in figures] == [
        age < dt.timedelta(days=30) and i == len(shown) - 1 for i in range(len(shown))
    ]


def test_uptime_without_any_check_shows_the_windows() -> None:
    assert [u.label for u in honest_uptimes({}, None, T0)] == ["24h", "7d", "30d"]
