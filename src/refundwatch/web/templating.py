"""Jinja filters the pages and panels share: money, durations, ages, percentages, UTC times."""

from __future__ import annotations

import datetime as dt
import hashlib

from jinja2 import Environment

from refundwatch.dashboard.svg import duration
from refundwatch.lib.money import example_amount, format_amount, format_money
from refundwatch.web import labels


def money(amount_minor: int, currency: str) -> str:
    """``1,200.00 EUR``: major units with the currency's exponent and thousands separators."""
    return format_money(amount_minor, currency)


def amount(amount_minor: int, currency: str) -> str:
    """The number alone, as a form field shows it again (``1200.00``: no separators, exact)."""
    return format_amount(amount_minor, currency).replace(",", "")


def ms(value: float | None) -> str:
    return "—" if value is None else duration(value)


def pct(rate: float | None, digits: int = 1) -> str:
    return "—" if rate is None else f"{rate * 100:.{digits}f}%"


def age(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long ago, shortly: 42 s, 5 min, 3 h, 2 d."""
    if moment is None:
        return "—"
    seconds = max(0.0, ((now or dt.datetime.now(dt.UTC)) - moment).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f} s"
    return duration(seconds * 1000)


def utc(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if moment is None else moment.astimezone(dt.UTC).strftime(fmt) + " UTC"


def time_field(value: str | None, end: str = "start") -> str:
    """A UTC moment from a URL (a date, or a date and time, maybe with its Z) as a datetime-local
    field's value, still in UTC (static/js/localtime.js shows it in the viewer's zone). A bare date
    is its day's first minute as a start, its last as an inclusive end."""
    text = (value or "").strip().removesuffix("Z")
    if len(text) == 10:
        return f"{text}T{'23:59' if end == 'end' else '00:00'}"
    return text


def digest(html: str) -> str:
    """A short fingerprint of rendered HTML: a live page names what it shows, so a stream that
    (re)connects sends it again only when it changed (dashboard.controllers)."""
    return hashlib.blake2b(html.encode(), digest_size=8).hexdigest()


def register_filters(env: Environment) -> None:
    env.filters.update(money=money, amount=amount, ms=ms, pct=pct, age=age, utc=utc)
    env.filters.update(
        status_label=labels.status_label,
        reason_label=labels.reason_label,
        error_label=labels.error_label,
        break_label=labels.break_label,
        resolution_label=labels.resolution_label,
        age_label=labels.age_label,
        status_badge=labels.status_badge,
        short_id=labels.short_id,
        id_chip=labels.id_chip,
        when=labels.when,
        example_amount=example_amount,
        time_field=time_field,
        digest=digest,
    )
