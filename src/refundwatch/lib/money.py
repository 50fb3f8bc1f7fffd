"""Money is integer minor units plus an ISO 4217 currency; exponents convert to processor formats."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from the usual 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}

# The currencies refundwatch accepts: ISO 4217 active codes commonly supported by the processors.
KNOWN_CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF
    BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC
    CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD ISK JMD JOD JPY KES
    KGS KHR KMF KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
    MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD
    OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR
    SEK SGD SHP SLE SOS SRD STD SZL THB TJS TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    """.split()  # noqa: SIM905 - a table reads better than 150 quoted codes
)


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def is_known_currency(currency: str) -> bool:
    return currency in KNOWN_CURRENCIES


def to_decimal_string(amount_minor: int, currency: str) -> str:
    """1050 EUR -> "10.50"; 1050 JPY -> "1050"; 1050 KWD -> "1.050"."""
    exp = exponent(currency)
    if exp == 0:
        return str(amount_minor)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def from_decimal_string(value: str, currency: str) -> int:
    """Exact inverse of to_decimal_string; refuses values with more precision than the currency has."""
    quantum = Decimal(value) * (10 ** exponent(currency))
    if quantum != quantum.to_integral_value():
        raise ValueError(f"{value} has more decimals than {currency} allows")
    return int(quantum)


def format_amount(amount_minor: int, currency: str) -> str:
    """As people read it, with thousands separators: 120000 EUR -> "1,200.00"; 1200 JPY -> "1,200";
    1250 KWD -> "1.250"."""
    whole, dot, frac = to_decimal_string(amount_minor, currency).partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}{dot}{frac}"


def format_money(amount_minor: int, currency: str) -> str:
    return f"{format_amount(amount_minor, currency)} {currency}"


class AmountError(ValueError):
    """A typed amount that cannot be taken as it is; the message says what to type instead."""


# A positive amount as a person types it: digits, optionally grouped by commas, optionally a fraction.
_TYPED = re.compile(r"(?P<whole>\d+|\d{1,3}(?:,\d{3})+)(?:\.(?P<frac>\d*))?")


def one_per_exponent(currencies: Iterable[str]) -> list[str]:
    """The first currency of each number of decimals, in order: ("EUR", "USD", "JPY") -> ["EUR", "JPY"].
    A figure in minor units (a role's limit) reads differently in each; one example of each says how."""
    seen: dict[int, str] = {}
    for currency in currencies:
        seen.setdefault(exponent(currency), currency.upper())
    return list(seen.values())


def example_amount(currency: str) -> str:
    exp = exponent(currency)
    return "1200" if exp == 0 else "600." + "0" * exp


def parse_amount(text: str, currency: str) -> int:
    """An amount typed in major units ("600", "600.00", "1,200.50") -> exact integer minor units.

    Never rounds: more decimals than the currency has is an AmountError, as is anything that is not a
    plain positive number (signs, exponents, letters)."""
    value = text.strip().replace(" ", "")
    found = _TYPED.fullmatch(value)
    if not found:
        raise AmountError(f"type the amount in {currency or 'the currency'}, like {example_amount(currency)}")
    exp = exponent(currency)
    if "," in value and found.group("frac") is None and exp > 0:
        # "1,500" is 1.50 where the comma is the decimal mark: never guess which was meant.
        raise AmountError(
            f"{text.strip()} could mean two amounts: a comma only groups thousands before a decimal point "
            f"(1,500.00); or type it without one, like {example_amount(currency)}"
        )
    frac = (found.group("frac") or "").rstrip("0")
    if len(frac) > exp:
        allowed = "no decimals" if exp == 0 else f"at most {exp} decimal{'s' if exp > 1 else ''}"
        raise AmountError(f"{currency} has {allowed}: {text.strip()} cannot be refunded exactly")
    try:
        scaled = Decimal(found.group("whole").replace(",", "") + "." + (frac or "0")).scaleb(exp)
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        raise AmountError(f"type the amount like {example_amount(currency)}") from None
    return int(scaled)
