"""Reading one settlement value: amounts in major or minor units, currency codes, times and zones.

Every helper raises FieldError with a short message; the parser adds the file and row.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from refundwatch.lib.money import exponent, is_known_currency
from refundwatch.reconciliation.parsing import FieldError

# A plain decimal as reports print it: optional sign, digits, optional fraction. No exponents, no
# thousands separators, no NaN: Decimal would accept those and a report never means them. The digit caps
# keep every value within Decimal's 28 significant digits, where scaling it stays exact.
_DECIMAL = re.compile(r"[+-]?(?:\d{1,15}(?:\.\d{0,12})?|\.\d{1,12})")


def currency_code(text: str, column: str) -> str:
    """An ISO 4217 code refundwatch knows, upper-cased (Stripe's reports print ``usd`` and ``USD``)."""
    code = _known_codes.get(text)
    if code is not None:  # a million lines name a handful of currencies: each is checked once
        return code
    code = text.strip().upper()
    if not code:
        raise FieldError(f"{column} is empty")
    if not is_known_currency(code):
        # Its exponent is unknown, so no amount in it can be read exactly: fail rather than guess.
        raise FieldError(f"{column} {text.strip()!r} is not a currency refundwatch knows")
    if len(_known_codes) < 1_024:
        _known_codes[text] = code
    return code


_known_codes: dict[str, str] = {}  # as written -> the code, for currencies already found known


def major_units(text: str, currency: str, column: str) -> int:
    """A decimal in major units ("-10.50") -> exact signed minor units of the currency.

    Never rounds: a digit beyond the currency's exponent ("12.5" JPY, "1.2345" KWD) is an error. Zeros
    beyond it carry no value and are accepted ("1200.00" JPY = 1200), because reports pad.

    Read from the digits themselves (the pattern has already checked them), not through Decimal: the
    same value as ``lib.money.from_decimal_string``, a few times faster on a million lines."""
    value = text.strip()
    if not _DECIMAL.fullmatch(value):
        raise FieldError(f"{column} {value!r} is not a decimal amount")
    places = exponent(currency)
    whole, _, fraction = value.partition(".")
    if fraction[places:].strip("0"):
        raise FieldError(f"{column} {value} has more decimals than {currency} allows")
    digits = whole + fraction[:places].ljust(places, "0")
    return int(digits) if digits.lstrip("+-") else 0  # "-.0" in JPY: no digits left, zero


def optional_major_units(text: str, currency: str, column: str) -> int | None:
    """None for an empty cell (Adyen leaves the unused side of debit/credit empty)."""
    return major_units(text, currency, column) if text.strip() else None


def minor_units(value: object, field: str) -> int:
    """An API's integer minor units; a float or a string is refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{field} is not an integer amount in minor units")
    return value


# Zone abbreviations as reports print them, each a fixed offset: the abbreviation already says whether
# summer time applied, so it is more precise than the zone it belongs to. Ambiguous ones are left out on
# purpose (IST: India, Ireland or Israel); a zone name or an explicit offset works for those.
_ABBREVIATIONS: dict[str, float] = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1,
    "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7,
    "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "AEST": 10, "AEDT": 11,
    "ACST": 9.5, "ACDT": 10.5, "AWST": 8, "NZST": 12, "NZDT": 13, "JST": 9, "KST": 9, "HKT": 8,
    "SGT": 8, "BRT": -3,
}  # fmt: skip
_OFFSET = re.compile(r"(?:UTC|GMT)?\s*(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?")


@lru_cache(maxsize=64)
def zone(label: str) -> tzinfo:
    """The zone a report names: an abbreviation (CET, PDT), an offset (+01:00, GMT+1) or an IANA name
    (Europe/Amsterdam). Anything else is an error: a guessed zone would misplace lines across cut-offs."""
    name = label.strip()
    if name.upper() in _ABBREVIATIONS:
        return timezone(timedelta(hours=_ABBREVIATIONS[name.upper()]), name.upper())
    found = _OFFSET.fullmatch(name.upper())
    if found:
        minutes = int(found["hours"]) * 60 + int(found["minutes"] or 0)
        if minutes >= 24 * 60:
            raise FieldError(f"time zone {name!r} is not a valid offset")
        return timezone(timedelta(minutes=-minutes if found["sign"] == "-" else minutes))
    if "/" in name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise FieldError(f"time zone {name!r} is unknown")


def local_time(text: str, tz: tzinfo, column: str) -> datetime:
    """A report's local date-time ("2013-06-03 11:26:49") in ``tz``, as UTC. A value that carries its
    own offset keeps it. A wall time repeated at the end of summer time takes the first (fold 0)."""
    value = text.strip()
    if not value:
        raise FieldError(f"{column} is empty")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"{column} {value!r} is not a date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def epoch_time(value: object, field: str) -> datetime:
    """An API's Unix timestamp (seconds), as UTC."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{field} is not a Unix timestamp")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise FieldError(f"{field} {value} is out of range") from None
