"""Money is integer minor units plus an ISO 4217 currency; exponents convert to processor formats."""

from __future__ import annotations

from decimal import Decimal

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


def format_money(amount_minor: int, currency: str) -> str:
    return f"{to_decimal_string(amount_minor, currency)} {currency}"
