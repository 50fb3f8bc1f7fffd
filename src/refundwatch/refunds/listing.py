"""The staff refunds list's filters: read from the query string, checked, and written back into links.

Every filter lives in the URL (a filtered list can be shared), all are optional and combine with AND.
Parsing never raises: a value that cannot be used becomes a message for the page, and the list is not
shown rather than shown without the filter the person asked for.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import get_args
from urllib.parse import urlencode

from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.lib.money import exponent, is_known_currency
from refundwatch.refunds.queries import SORTS, RefundFilter, parse_cursor
from refundwatch.refunds.schemas import Reason
from refundwatch.refunds.states import Status

PAGE_SIZE = 50
REASONS: tuple[str, ...] = get_args(Reason)
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
# The single-valued filters, in the order links carry them (``status`` may repeat and comes first).
TEXT_FIELDS = (
    "q",
    "connection",
    "reason",
    "error",
    "currency",
    "min_amount",
    "max_amount",
    "from",
    "to",
    "sort",
)
_MAX_TEXT = {"q": 255, "connection": 255, "error": 128}
# Digits with an optional fraction, as a person types a price; no sign, exponent or separators.
_AMOUNT = re.compile(r"\d{1,15}(?:\.\d{1,6})?")
# What ``from``/``to`` accept (UTC), each with its unit: ``to`` includes the whole day/minute/second typed.
_MOMENTS = (
    ("%Y-%m-%d", dt.timedelta(days=1)),
    ("%Y-%m-%dT%H:%M", dt.timedelta(minutes=1)),
    ("%Y-%m-%dT%H:%M:%S", dt.timedelta(seconds=1)),
)


@dataclass(slots=True)
class Listing:
    """One request's filters: what the form shows again, what the query uses, and what links carry."""

    form: dict[str, str] = field(default_factory=lambda: dict.fromkeys(TEXT_FIELDS, ""))
    statuses: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cursor: str | None = None
    filter: RefundFilter = field(default_factory=RefundFilter)

    def pairs(self) -> list[tuple[str, str]]:
        """The active filters as query parameters (no cursor), in a stable order."""
        items = [("status", s) for s in self.statuses]
        return items + [(name, self.form[name]) for name in TEXT_FIELDS if self.form[name]]

    def query(self, **extra: str) -> str:
        return urlencode([*self.pairs(), *extra.items()])

    def sorted_by(self, sort: str) -> str:
        """The same filters in another order, from the first page."""
        pairs = [(name, value) for name, value in self.pairs() if name != "sort"]
        return urlencode(pairs if sort == "newest" else [*pairs, ("sort", sort)])

    def summary(self) -> dict[str, str | list[str]]:
        """The filters as the audit log records them."""
        found: dict[str, str | list[str]] = {name: value for name, value in self.pairs() if name != "status"}
        if self.statuses:
            found["status"] = list(self.statuses)
        return found


def parse_listing(params: Iterable[tuple[str, str]]) -> Listing:
    """The filters in ``params`` (the query string's pairs; ``status`` may repeat)."""
    listing = Listing()
    raw: dict[str, str] = {}
    for name, value in params:
        text = value.strip()
        if name == "status" and text and text not in listing.statuses:
            listing.statuses.append(text)
        elif name == "payment" and text:  # the old single field for the payment reference
            raw.setdefault("q", text)
        elif name in TEXT_FIELDS and text:
            raw[name] = text
        elif name == "cursor" and text:
            listing.cursor = text
    listing.form.update(raw)
    listing.errors = _problems(listing.statuses, raw)
    if listing.cursor is not None and not _is_cursor(listing.cursor, raw.get("sort", "newest")):
        listing.errors.append("cursor is not valid")
    if not listing.errors:
        listing.filter = _build(listing.statuses, raw, listing.cursor)
    return listing


def _is_cursor(text: str, sort: str) -> bool:
    try:
        parse_cursor(text, sort)
    except ValidationFailed:
        return False
    return True


def _problems(statuses: list[str], raw: dict[str, str]) -> list[str]:
    problems = [f"unknown status {s!r}" for s in statuses if s not in STATUSES]
    if any("\x00" in v for v in [*statuses, *raw.values()]):
        problems.append("a filter contains a character that is not allowed")
    problems += [f"{name} is too long" for name, limit in _MAX_TEXT.items() if len(raw.get(name, "")) > limit]
    if "sort" in raw and raw["sort"] not in SORTS:
        problems.append(f"unknown sort {raw['sort']!r}")
    if "reason" in raw and raw["reason"] not in REASONS:
        problems.append(f"unknown reason {raw['reason']!r}")
    if "currency" in raw and not is_known_currency(raw["currency"].upper()):
        problems.append(f"unknown currency {raw['currency']!r}")
    problems += _amount_problems(raw)
    problems += _time_problems(raw)
    return problems


def _amount_exponent(raw: dict[str, str]) -> int:
    # Amounts are typed in major units. With a currency filter its own exponent applies (JPY 0, KWD 3);
    # without one, lib/money's default for any currency outside its table: 2, ISO 4217's usual
    # exponent. A person filtering JPY or KWD amounts should pick the currency too.
    currency = raw.get("currency", "").upper()
    return exponent(currency) if currency else 2


def _minor(value: str, exp: int) -> int:
    """Major units as typed to minor units: 12.50 -> 1250 with exponent 2; ValueError for anything
    else, or for more decimals than the exponent allows."""
    if not _AMOUNT.fullmatch(value):
        raise ValueError(value)
    scaled = Decimal(value).scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(value)
    return int(scaled)


def _amount_problems(raw: dict[str, str]) -> list[str]:
    exp = _amount_exponent(raw)
    problems: list[str] = []
    bounds: list[int] = []
    for name in ("min_amount", "max_amount"):
        if name not in raw:
            continue
        try:
            bounds.append(_minor(raw[name], exp))
        except ValueError:
            decimals = f"at most {exp} decimals" if exp else "no decimals"
            problems.append(f"{name} must be an amount like {_example(exp)} ({decimals})")
    if not problems and len(bounds) == 2 and bounds[0] > bounds[1]:
        problems.append("min_amount is above max_amount")
    return problems


def _example(exp: int) -> str:
    return "12" if exp == 0 else "12." + "5".ljust(exp, "0")


def parse_moment(value: str) -> tuple[dt.datetime, dt.datetime]:
    """A UTC moment typed as a date or a date and time: where it starts and where the unit typed ends
    (``to`` includes the whole unit: to=2026-11-01 takes in all of that day)."""
    text = value.strip().removesuffix("Z").replace(" ", "T", 1)
    for pattern, unit in _MOMENTS:
        try:
            start = dt.datetime.strptime(text, pattern).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        try:
            return start, start + unit
        except OverflowError:  # the last day of year 9999 has no end to compare with
            break
    raise ValueError(value)


def _time_problems(raw: dict[str, str]) -> list[str]:
    problems: list[str] = []
    moments: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for name in ("from", "to"):
        if name not in raw:
            continue
        try:
            moments[name] = parse_moment(raw[name])
        except ValueError:
            problems.append(f"{name} must be a UTC date (YYYY-MM-DD) or date and time (YYYY-MM-DDTHH:MM)")
    if not problems and len(moments) == 2 and moments["from"][0] >= moments["to"][1]:
        problems.append("from is after to")
    return problems


def _build(statuses: list[str], raw: dict[str, str], cursor: str | None) -> RefundFilter:
    """The query's filter from values ``_problems`` found usable."""
    exp = _amount_exponent(raw)
    amount = {k: _minor(raw[k], exp) if k in raw else None for k in ("min_amount", "max_amount")}
    return RefundFilter(
        connection=raw.get("connection"),
        created_after=parse_moment(raw["from"])[0] if "from" in raw else None,
        created_before=parse_moment(raw["to"])[1] if "to" in raw else None,
        cursor=cursor,
        limit=PAGE_SIZE,
        statuses=tuple(statuses),
        reason=raw.get("reason"),
        error=raw.get("error"),
        currency=raw["currency"].upper() if "currency" in raw else None,
        min_amount=amount["min_amount"],
        max_amount=amount["max_amount"],
        q=raw.get("q"),
        sort=raw.get("sort", "newest"),
    )
