"""Jinja filters the pages and panels share: money, durations, ages, percentages, UTC times."""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment

from refundwatch.dashboard.svg import duration
from refundwatch.lib.money import format_money


def money(amount_minor: int, currency: str) -> str:
    return format_money(amount_minor, currency)


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


def register_filters(env: Environment) -> None:
    env.filters.update(money=money, ms=ms, pct=pct, age=age, utc=utc)
